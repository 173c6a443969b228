"""The QuantDesk program's Anchor IDL as a codec: instruction data, account metas, account decoding, error messages.

Every layout comes from the IDL (new Anchor format: discriminators, PDA seeds, type layouts), so an IDL update is a
data change, not a code change. Where the deployed binary disagrees with the IDL (see the fixture's README), the
difference is written down once, in ``BINARY_OVERRIDES``, instead of being scattered through hand-written layouts:

- the program id is the deployed one (``Settings.quantdesk_program_id``), never the IDL's ``address``;
- ``deposit_native_sol`` takes its accounts in another order than the IDL lists;
- custom error numbers from 6023 up are off by one, so program errors are read by *name* from the logs.

Values cross this codec as plain Python: structs are dicts, unit enum variants are their names (``"Short"``), enum
variants with fields are ``{name: fields}``, pubkeys are ``solders`` ``Pubkey`` (a base58 string is accepted too),
``option`` is ``None`` or the value, ``vec``/``array`` are lists, ``bytes`` is ``bytes``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from mikey.errors import ConfigError, InvalidInput

IDL_RESOURCE = "quantdesk_perp_dex.idl.json"
DISCRIMINATOR_LEN = 8

# Where the deployed binary differs from the IDL it shipped with (observed by running it in LiteSVM).
BINARY_OVERRIDES: dict[str, dict[str, Any]] = {
    "deposit_native_sol": {
        "account_order": ["user_account", "collateral_account", "protocol_vault", "user", "sol_usd_price_feed",
                          "system_program", "rent"],
    },
}

_INTS: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "i8": (1, True), "u16": (2, False), "i16": (2, True), "u32": (4, False), "i32": (4, True),
    "u64": (8, False), "i64": (8, True), "u128": (16, False), "i128": (16, True),
}
_FLOATS = {"f32": "<f", "f64": "<d"}

_ANCHOR_ERROR = re.compile(r"Error Code: (?P<name>\w+)\.(?: Error Number: \d+\.)?(?: Error Message: (?P<msg>.*?)\.?$)?")
_STRUCTURAL = re.compile(r"Program \w+ (invoke \[\d+\]|success|consumed .*)$|Program log: Instruction: ")
_OLD_PANIC = re.compile(r"'(?P<msg>.*)', (?P<where>\S+)")  # Rust < 1.73: panicked at 'msg', file:line:col


def _pubkey(value: Any, what: str) -> Pubkey:
    if isinstance(value, Pubkey):
        return value
    if isinstance(value, str):
        try:
            return Pubkey.from_string(value)
        except ValueError as exc:
            raise InvalidInput(f"{what}: {value!r} is not a base58 public key") from exc
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return Pubkey.from_bytes(bytes(value))
    raise InvalidInput(f"{what}: expected a public key, got {type(value).__name__}")


@dataclass(frozen=True)
class ProgramFailure:
    """Why the program refused a transaction, in its own words."""

    kind: str  # "anchor" (a named error), "panic", or "runtime" (anything else the logs or status say)
    name: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.name else self.message


class Idl:
    """One program's IDL, bound to the program id the binary really runs under."""

    def __init__(self, raw: Mapping[str, Any], program_id: Pubkey | str) -> None:
        self.raw = raw
        self.program_id = _pubkey(program_id, "program id")
        self.name: str = raw.get("metadata", {}).get("name", "program")
        self._instructions = {ix["name"]: ix for ix in raw.get("instructions", [])}
        self._accounts = {acc["name"]: acc for acc in raw.get("accounts", [])}
        self._types = {t["name"]: t for t in raw.get("types", [])}
        self._errors = {err["name"]: err for err in raw.get("errors", [])}
        self._by_discriminator = {bytes(acc["discriminator"]): acc["name"] for acc in raw.get("accounts", [])}

    @classmethod
    def load(cls, program_id: Pubkey | str, path: Path | None = None) -> Idl:
        """The IDL shipped in this package (or the file at ``path``) for the program deployed at ``program_id``."""
        try:
            if path is None:
                text = resources.files(__package__).joinpath(IDL_RESOURCE).read_text(encoding="utf-8")
            else:
                text = Path(path).read_text(encoding="utf-8")
            raw = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the program IDL {path or IDL_RESOURCE}: {exc}") from exc
        return cls(raw, program_id)

    # Lookups ----------------------------------------------------------------------------------------------------
    def instruction(self, name: str) -> Mapping[str, Any]:
        try:
            return self._instructions[name]
        except KeyError:
            raise ConfigError(f"{self.name} has no instruction {name!r}") from None

    def instruction_discriminator(self, name: str) -> bytes:
        return bytes(self.instruction(name)["discriminator"])

    def account_discriminator(self, name: str) -> bytes:
        try:
            return bytes(self._accounts[name]["discriminator"])
        except KeyError:
            raise ConfigError(f"{self.name} has no account type {name!r}") from None

    def account_type(self, data: bytes) -> str | None:
        """The account type whose discriminator ``data`` starts with, if any."""
        return self._by_discriminator.get(bytes(data[:DISCRIMINATOR_LEN]))

    def type_def(self, name: str) -> Mapping[str, Any]:
        try:
            return self._types[name]["type"]
        except KeyError:
            raise ConfigError(f"{self.name}'s IDL defines no type {name!r}") from None

    # Borsh ------------------------------------------------------------------------------------------------------
    def encode(self, ty: Any, value: Any, what: str = "value") -> bytes:
        """Borsh bytes of ``value`` as IDL type ``ty``."""
        if isinstance(ty, str):
            if ty in _INTS:
                size, signed = _INTS[ty]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidInput(f"{what}: {ty} needs an integer, got {value!r}")
                try:
                    return value.to_bytes(size, "little", signed=signed)
                except OverflowError:
                    raise InvalidInput(f"{what}: {value} does not fit in {ty}") from None
            if ty == "bool":
                if not isinstance(value, bool):
                    raise InvalidInput(f"{what}: bool needs True or False, got {value!r}")
                return b"\x01" if value else b"\x00"
            if ty in _FLOATS:
                return struct.pack(_FLOATS[ty], float(value))
            if ty == "pubkey":
                return bytes(_pubkey(value, what))
            if ty == "string":
                if not isinstance(value, str):
                    raise InvalidInput(f"{what}: string needed, got {value!r}")
                raw = value.encode("utf-8")
                return struct.pack("<I", len(raw)) + raw
            if ty == "bytes":
                raw = bytes(value)
                return struct.pack("<I", len(raw)) + raw
            raise ConfigError(f"unsupported IDL type {ty!r}")
        if "option" in ty:
            return b"\x00" if value is None else b"\x01" + self.encode(ty["option"], value, what)
        if "vec" in ty:
            items = list(value)
            return struct.pack("<I", len(items)) + b"".join(
                self.encode(ty["vec"], item, f"{what}[{i}]") for i, item in enumerate(items))
        if "array" in ty:
            inner, length = ty["array"]
            items = list(value)
            if len(items) != length:
                raise InvalidInput(f"{what}: array of {length} needed, got {len(items)} items")
            return b"".join(self.encode(inner, item, f"{what}[{i}]") for i, item in enumerate(items))
        if "defined" in ty:
            return self._encode_defined(self._defined_name(ty), value, what)
        raise ConfigError(f"unsupported IDL type {ty!r}")

    def decode(self, ty: Any, data: bytes, offset: int = 0) -> tuple[Any, int]:
        """The value of IDL type ``ty`` at ``offset`` in ``data``, and the offset just after it."""
        try:
            return self._decode(ty, memoryview(bytes(data)), offset)
        except (IndexError, struct.error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot decode {ty!r} at offset {offset}: data too short or malformed ({exc})") from exc

    def _decode(self, ty: Any, data: memoryview, offset: int) -> tuple[Any, int]:
        if isinstance(ty, str):
            if ty in _INTS:
                size, signed = _INTS[ty]
                chunk = data[offset:offset + size]
                if len(chunk) != size:
                    raise IndexError(f"{ty} needs {size} bytes")
                return int.from_bytes(chunk, "little", signed=signed), offset + size
            if ty == "bool":
                byte = data[offset]
                if byte > 1:
                    raise struct.error(f"invalid bool byte {byte}")
                return byte == 1, offset + 1
            if ty in _FLOATS:
                (value,) = struct.unpack_from(_FLOATS[ty], data, offset)
                return value, offset + struct.calcsize(_FLOATS[ty])
            if ty == "pubkey":
                chunk = bytes(data[offset:offset + 32])
                if len(chunk) != 32:
                    raise IndexError("pubkey needs 32 bytes")
                return Pubkey.from_bytes(chunk), offset + 32
            if ty in ("string", "bytes"):
                (length,) = struct.unpack_from("<I", data, offset)
                start = offset + 4
                chunk = bytes(data[start:start + length])
                if len(chunk) != length:
                    raise IndexError(f"{ty} of {length} bytes runs past the data")
                return (chunk.decode("utf-8") if ty == "string" else chunk), start + length
            raise ConfigError(f"unsupported IDL type {ty!r}")
        if "option" in ty:
            tag = data[offset]
            if tag == 0:
                return None, offset + 1
            if tag != 1:
                raise struct.error(f"invalid option tag {tag}")
            return self._decode(ty["option"], data, offset + 1)
        if "vec" in ty:
            (length,) = struct.unpack_from("<I", data, offset)
            offset += 4
            items = []
            for _ in range(length):
                item, offset = self._decode(ty["vec"], data, offset)
                items.append(item)
            return items, offset
        if "array" in ty:
            inner, length = ty["array"]
            items = []
            for _ in range(length):
                item, offset = self._decode(inner, data, offset)
                items.append(item)
            return items, offset
        if "defined" in ty:
            return self._decode_defined(self._defined_name(ty), data, offset)
        raise ConfigError(f"unsupported IDL type {ty!r}")

    @staticmethod
    def _defined_name(ty: Mapping[str, Any]) -> str:
        defined = ty["defined"]
        return defined if isinstance(defined, str) else defined["name"]

    def _encode_defined(self, name: str, value: Any, what: str) -> bytes:
        td = self.type_def(name)
        kind = td["kind"]
        if kind == "struct":
            return self._encode_fields(td.get("fields", []), value, f"{what} ({name})")
        if kind == "enum":
            variants = td["variants"]
            if isinstance(value, str):
                variant_name, fields = value, None
            elif isinstance(value, Mapping) and len(value) == 1:
                ((variant_name, fields),) = value.items()
            else:
                raise InvalidInput(f"{what}: {name} needs a variant name or {{variant: fields}}, got {value!r}")
            for index, variant in enumerate(variants):
                if variant["name"] == variant_name:
                    return bytes([index]) + self._encode_fields(variant.get("fields", []), fields, f"{what}.{name}")
            names = ", ".join(v["name"] for v in variants)
            raise InvalidInput(f"{what}: {variant_name!r} is not a {name} ({names})")
        if kind == "type":
            return self.encode(td["alias"], value, what)
        raise ConfigError(f"unsupported IDL type kind {kind!r} for {name}")

    def _encode_fields(self, fields: list[Any], value: Any, what: str) -> bytes:
        if not fields:
            return b""
        if isinstance(fields[0], Mapping):  # named fields
            if not isinstance(value, Mapping):
                raise InvalidInput(f"{what}: fields as a mapping needed, got {value!r}")
            missing = [f["name"] for f in fields if f["name"] not in value]
            extra = set(value) - {f["name"] for f in fields}
            if missing or extra:
                raise InvalidInput(f"{what}: missing fields {missing}, unknown fields {sorted(extra)}")
            return b"".join(self.encode(f["type"], value[f["name"]], f"{what}.{f['name']}") for f in fields)
        items = list(value)  # tuple fields
        if len(items) != len(fields):
            raise InvalidInput(f"{what}: {len(fields)} tuple fields needed, got {len(items)}")
        pairs = enumerate(zip(fields, items, strict=True))
        return b"".join(self.encode(ty, item, f"{what}[{i}]") for i, (ty, item) in pairs)

    def _decode_defined(self, name: str, data: memoryview, offset: int) -> tuple[Any, int]:
        td = self.type_def(name)
        kind = td["kind"]
        if kind == "struct":
            return self._decode_fields(td.get("fields", []), data, offset)
        if kind == "enum":
            index = data[offset]
            variants = td["variants"]
            if index >= len(variants):
                raise struct.error(f"{name} has no variant {index}")
            variant = variants[index]
            if not variant.get("fields"):
                return variant["name"], offset + 1
            fields, offset = self._decode_fields(variant["fields"], data, offset + 1)
            return {variant["name"]: fields}, offset
        if kind == "type":
            return self._decode(td["alias"], data, offset)
        raise ConfigError(f"unsupported IDL type kind {kind!r} for {name}")

    def _decode_fields(self, fields: list[Any], data: memoryview, offset: int) -> tuple[Any, int]:
        if fields and isinstance(fields[0], Mapping):
            out: dict[str, Any] = {}
            for field in fields:
                out[field["name"]], offset = self._decode(field["type"], data, offset)
            return out, offset
        items = []
        for ty in fields:
            item, offset = self._decode(ty, data, offset)
            items.append(item)
        return items, offset

    # Accounts ---------------------------------------------------------------------------------------------------
    def encode_account(self, name: str, fields: Mapping[str, Any]) -> bytes:
        """Discriminator + Borsh fields of account type ``name`` (to create accounts in a local VM)."""
        return self.account_discriminator(name) + self._encode_defined(name, fields, name)

    def decode_account(self, name: str, data: bytes) -> dict[str, Any]:
        """The fields of an account of type ``name``; trailing bytes (Anchor's spare space) are ignored."""
        disc = self.account_discriminator(name)
        if bytes(data[:DISCRIMINATOR_LEN]) != disc:
            raise InvalidInput(f"account data is not a {name} (discriminator {bytes(data[:8]).hex()} != {disc.hex()})")
        try:
            value, _ = self._decode_defined(name, memoryview(bytes(data)), DISCRIMINATOR_LEN)
        except (IndexError, struct.error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{name} account data is too short or malformed: {exc}") from exc
        return value

    # Instructions -----------------------------------------------------------------------------------------------
    def encode_args(self, name: str, args: Mapping[str, Any]) -> bytes:
        spec = self.instruction(name)["args"]
        declared = {a["name"] for a in spec}
        missing = [a["name"] for a in spec if a["name"] not in args]
        extra = sorted(set(args) - declared)
        if missing or extra:
            raise InvalidInput(f"{name}: missing arguments {missing}, unknown arguments {extra}")
        return b"".join(self.encode(a["type"], args[a["name"]], f"{name}.{a['name']}") for a in spec)

    def instruction_data(self, name: str, args: Mapping[str, Any] | None = None) -> bytes:
        """The instruction's 8-byte discriminator followed by its Borsh arguments."""
        return self.instruction_discriminator(name) + self.encode_args(name, args or {})

    def account_metas(self, name: str, accounts: Mapping[str, Pubkey | str],
                      args: Mapping[str, Any] | None = None) -> list[AccountMeta]:
        """The instruction's accounts in the binary's order. Fixed addresses and PDAs are derived from the IDL (and
        ``BINARY_OVERRIDES``); every other account comes from ``accounts`` by its IDL name, which may also override a
        derived one. An absent optional account is passed as the program id, as Anchor expects."""
        spec = self.instruction(name)["accounts"]
        if any("accounts" in item for item in spec):
            raise ConfigError(f"{name}: nested account groups are not supported")
        override = BINARY_OVERRIDES.get(name, {})
        order = override.get("account_order") or [item["name"] for item in spec]
        by_name = {item["name"]: item for item in spec}
        if sorted(order) != sorted(by_name):
            raise ConfigError(f"{name}: override account order {order} does not list the IDL's accounts")
        resolved = self.resolve_accounts(name, accounts, args or {})
        metas = []
        for account_name in order:
            item = by_name[account_name]
            key = resolved.get(account_name)
            if key is None:
                if item.get("optional"):
                    metas.append(AccountMeta(self.program_id, is_signer=False, is_writable=False))
                    continue
                raise InvalidInput(f"{name}: account {account_name!r} is required")
            metas.append(AccountMeta(key, is_signer=bool(item.get("signer")), is_writable=bool(item.get("writable"))))
        return metas

    def resolve_accounts(self, name: str, accounts: Mapping[str, Pubkey | str],
                         args: Mapping[str, Any]) -> dict[str, Pubkey]:
        """Every account of instruction ``name`` that is given, fixed or derivable, by IDL name."""
        spec = self.instruction(name)["accounts"]
        known = {k: _pubkey(v, f"{name}.{k}") for k, v in accounts.items()}
        for item in spec:
            if item["name"] not in known and "address" in item:
                known[item["name"]] = _pubkey(item["address"], f"{name}.{item['name']}")
        pending = [item for item in spec if item["name"] not in known and "pda" in item]
        while pending:  # a PDA may be seeded by another derived account
            progressed = False
            for item in list(pending):
                key = self._derive(name, item["pda"], known, args)
                if key is not None:
                    known[item["name"]] = key
                    pending.remove(item)
                    progressed = True
            if not progressed:
                names = [item["name"] for item in pending]
                raise InvalidInput(f"{name}: cannot derive {names}: a seed account or argument is missing")
        return known

    def _derive(self, name: str, pda: Mapping[str, Any], known: Mapping[str, Pubkey],
                args: Mapping[str, Any]) -> Pubkey | None:
        seeds = []
        for seed in pda["seeds"]:
            raw = self._seed_bytes(name, seed, known, args)
            if raw is None:
                return None
            seeds.append(raw)
        program = self.program_id
        if "program" in pda:
            raw = self._seed_bytes(name, pda["program"], known, args)
            if raw is None:
                return None
            program = Pubkey.from_bytes(raw)
        return Pubkey.find_program_address(seeds, program)[0]

    def _seed_bytes(self, name: str, seed: Mapping[str, Any], known: Mapping[str, Pubkey],
                    args: Mapping[str, Any]) -> bytes | None:
        kind = seed["kind"]
        if kind == "const":
            return bytes(seed["value"])
        if kind == "account":
            if "." in seed["path"]:
                raise ConfigError(f"{name}: seeds from account fields ({seed['path']}) are not supported")
            key = known.get(seed["path"])
            return None if key is None else bytes(key)
        if kind == "arg":
            arg_name = seed["path"]
            arg_types = {a["name"]: a["type"] for a in self.instruction(name)["args"]}
            if arg_name not in args:
                return None
            ty = arg_types[arg_name]
            raw = self.encode(ty, args[arg_name], f"{name}.{arg_name}")
            # Anchor seeds a string/bytes argument by its content, without Borsh's length prefix.
            return raw[4:] if ty in ("string", "bytes") else raw
        raise ConfigError(f"{name}: unsupported seed kind {kind!r}")

    def build_instruction(self, name: str, args: Mapping[str, Any] | None = None,
                          accounts: Mapping[str, Pubkey | str] | None = None) -> Instruction:
        """A ready-to-sign instruction of ``name``."""
        args = args or {}
        return Instruction(self.program_id, self.instruction_data(name, args),
                           self.account_metas(name, accounts or {}, args))

    # Errors -----------------------------------------------------------------------------------------------------
    def error_message(self, name: str) -> str | None:
        err = self._errors.get(name)
        return None if err is None else err.get("msg", name)

    def failure_from_logs(self, logs: list[str], status: str | None = None) -> ProgramFailure:
        """Why a transaction failed, from its logs: a named program error (its IDL message, never by number), a
        panic's message, or else the runtime's last word (the status, or the last failure line of the logs)."""
        for line in logs:
            match = _ANCHOR_ERROR.search(line)
            if match:
                err_name = match["name"]
                message = self.error_message(err_name) or match["msg"] or err_name
                return ProgramFailure("anchor", err_name, message)
        for index, line in enumerate(logs):
            start = line.find("panicked at ")
            if start < 0:
                continue
            rest = line[start + len("panicked at "):]
            old = _OLD_PANIC.match(rest)
            if old:
                return ProgramFailure("panic", None, f"{old['msg']} ({old['where']})")
            # Rust >= 1.73: "panicked at file:line:col:" then the message, on the next line of the same log entry
            # or in the next log entry.
            where, _, message = rest.partition("\n")
            message = message.strip()
            if not message and index + 1 < len(logs):
                message = logs[index + 1].removeprefix("Program log: ").strip()
            return ProgramFailure("panic", None, f"{message or 'panic'} ({where.strip().rstrip(':')})")
        for index, line in enumerate(logs):
            if " failed: " not in line:
                continue
            reason = line.split(" failed: ", 1)[1]
            # The line before the first failure usually says why (e.g. "Transfer: insufficient lamports 5, need 9").
            said = [entry for entry in logs[:index] if not _STRUCTURAL.match(entry)]
            return ProgramFailure("runtime", None, f"{said[-1].removeprefix('Program log: ')} ({reason})"
                                  if said else reason)
        return ProgramFailure("runtime", None, status or "transaction failed without logs")
