"""The IDL codec against values derived independently here: Anchor's discriminator rule (sha256 of
"global:<name>" / "account:<Name>"), arguments packed by hand with ``struct``, PDAs found with solders directly,
accounts laid out byte by byte; and the program's errors read from real log lines by name, never by number."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from solders.pubkey import Pubkey

from mikey.errors import InvalidInput
from mikey.execution.solana.idl import Idl
from tests.execution.solana.conftest import PROGRAM_ID, SHARED_IDL

PID = Pubkey.from_string(PROGRAM_ID)
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
RENT = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
USER = Pubkey.from_string("9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin")
USER_ACCOUNT = Pubkey.from_string("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T")
MARKET = Pubkey.from_string("7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU")
FEED = Pubkey.from_string("H6ARHf6YXhGYeQfUzQNGk6rDNnLBQKrenN712K4AQJEG")


def anchor_sighash(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def test_the_shipped_idl_is_the_shared_fixture(idl: Idl) -> None:
    if not SHARED_IDL.is_file():
        pytest.skip(f"{SHARED_IDL} is absent")
    assert idl.raw == json.loads(SHARED_IDL.read_text())


@pytest.mark.parametrize("name", ["open_position", "close_position", "deposit_native_sol"])
def test_instruction_discriminators_follow_anchor(idl: Idl, name: str) -> None:
    listed = next(ix for ix in idl.raw["instructions"] if ix["name"] == name)["discriminator"]
    assert idl.instruction_discriminator(name) == anchor_sighash(name) == bytes(listed)


@pytest.mark.parametrize("name", ["Position", "Market", "UserAccount", "CollateralAccount"])
def test_account_discriminators_follow_anchor(idl: Idl, name: str) -> None:
    assert idl.account_discriminator(name) == hashlib.sha256(f"account:{name}".encode()).digest()[:8]


def test_open_position_bytes_and_accounts(idl: Idl) -> None:
    args = {"position_index": 513, "side": "Short", "size": 1_500_000, "leverage": 10, "entry_price": 60_000_123_456}
    ix = idl.build_instruction("open_position", args, {"user_account": USER_ACCOUNT, "market": MARKET, "user": USER})

    assert bytes(ix.data) == anchor_sighash("open_position") + struct.pack("<HBQHQ", 513, 1, 1_500_000, 10,
                                                                           60_000_123_456)
    position, _ = Pubkey.find_program_address([b"position", bytes(USER_ACCOUNT), struct.pack("<H", 513)], PID)
    assert ix.program_id == PID  # the deployed id, not the IDL's address
    assert [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts] == [
        (position, False, True), (USER_ACCOUNT, False, True), (MARKET, False, True), (USER, True, True),
        (SYSTEM, False, False)]
    assert idl.raw["address"] != PROGRAM_ID


def test_open_position_long_is_variant_zero(idl: Idl) -> None:
    data = idl.instruction_data("open_position", {"position_index": 0, "side": "Long", "size": 1, "leverage": 1,
                                                  "entry_price": 1})
    assert data[8 + 2] == 0


def test_close_position_bytes_and_accounts(idl: Idl) -> None:
    position = Pubkey.from_string("3c26GZJyK6ista3JCpRjg6RdgfSaY3FgueLYE5jofJq8")
    ix = idl.build_instruction("close_position", {}, {"market": MARKET, "position": position, "user": USER})
    assert bytes(ix.data) == anchor_sighash("close_position")
    assert [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts] == [
        (MARKET, False, True), (position, False, True), (USER, True, True)]


def test_deposit_native_sol_follows_the_binary_account_order(idl: Idl) -> None:
    ix = idl.build_instruction("deposit_native_sol", {"amount": 2_500_000_000},
                               {"user_account": USER_ACCOUNT, "user": USER, "sol_usd_price_feed": FEED})

    assert bytes(ix.data) == anchor_sighash("deposit_native_sol") + struct.pack("<Q", 2_500_000_000)
    collateral, _ = Pubkey.find_program_address([b"collateral", bytes(USER), b"SOL"], PID)
    vault, _ = Pubkey.find_program_address([b"protocol_sol_vault"], PID)
    # README: user_account, collateral_account, protocol_vault, user (signer), sol_usd_price_feed, system_program, rent
    assert [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts] == [
        (USER_ACCOUNT, False, True), (collateral, False, True), (vault, False, True), (USER, True, True),
        (FEED, False, False), (SYSTEM, False, False), (RENT, False, False)]
    idl_order = [a["name"] for a in idl.instruction("deposit_native_sol")["accounts"]]
    assert idl_order[:4] == ["user_account", "user", "protocol_vault", "collateral_account"]  # what the IDL says


def test_missing_accounts_and_bad_arguments_are_named(idl: Idl) -> None:
    with pytest.raises(InvalidInput, match="position"):
        idl.build_instruction("open_position", {"position_index": 1, "side": "Short", "size": 1, "leverage": 1,
                                                "entry_price": 1}, {"market": MARKET, "user": USER})
    with pytest.raises(InvalidInput, match="does not fit in u16"):
        idl.instruction_data("open_position", {"position_index": 70_000, "side": "Short", "size": 1, "leverage": 1,
                                               "entry_price": 1})
    with pytest.raises(InvalidInput, match="not a PositionSide"):
        idl.instruction_data("open_position", {"position_index": 1, "side": "Sideways", "size": 1, "leverage": 1,
                                               "entry_price": 1})
    with pytest.raises(InvalidInput, match="integer"):
        idl.instruction_data("open_position", {"position_index": 1, "side": "Short", "size": 1, "leverage": 2.5,
                                               "entry_price": 1})
    with pytest.raises(InvalidInput, match="missing arguments"):
        idl.instruction_data("open_position", {"position_index": 1})


def position_bytes(idl: Idl) -> bytes:
    """A Position account laid out field by field, as the program writes it (plus spare space)."""
    keys = [Pubkey.from_string(k) for k in (str(USER), str(USER_ACCOUNT), str(MARKET), str(FEED), str(SYSTEM))]
    return (hashlib.sha256(b"account:Position").digest()[:8]
            + bytes(USER_ACCOUNT) + bytes(USER) + bytes(MARKET)
            + struct.pack("<HBB", 42, 1, 0)  # position_index, side Short, status Open
            + struct.pack("<QQQQ", 500_000, 60_000_000_000, 61_000_000_000, 3_060_000_000_000)
            + struct.pack("<qqqqq", -250_000_000, 7, -3, 1_700_000_000, 12)
            + struct.pack("<QQ", 3_000_000_000, 2_400_000_000)
            + struct.pack("<H", 10)
            + struct.pack("<QQ", 0, 9)
            + b"".join(bytes(k) for k in keys)
            + struct.pack("<qqqqB", 1_700_000_000, 0, 1_700_000_100, 0, 254)
            + bytes(16))


def test_position_decodes_from_hand_laid_bytes(idl: Idl) -> None:
    decoded = idl.decode_account("Position", position_bytes(idl))
    assert decoded["user_account"] == USER_ACCOUNT and decoded["user"] == USER and decoded["market"] == MARKET
    assert (decoded["position_index"], decoded["side"], decoded["status"]) == (42, "Short", "Open")
    assert (decoded["size"], decoded["entry_price"], decoded["current_price"], decoded["liquidation_price"]) == (
        500_000, 60_000_000_000, 61_000_000_000, 3_060_000_000_000)
    assert (decoded["unrealized_pnl"], decoded["realized_pnl"], decoded["funding_rate"]) == (-250_000_000, 7, -3)
    assert (decoded["initial_margin"], decoded["maintenance_margin"], decoded["leverage"]) == (
        3_000_000_000, 2_400_000_000, 10)
    assert decoded["collateral_accounts"][3] == FEED
    assert (decoded["opened_at"], decoded["last_updated"], decoded["bump"]) == (1_700_000_000, 1_700_000_100, 254)
    fields = dict(decoded)
    assert idl.encode_account("Position", fields) == position_bytes(idl)[:-16]


def test_market_with_strings_decodes_from_hand_laid_bytes(idl: Idl) -> None:
    raw = (hashlib.sha256(b"account:Market").digest()[:8]
           + struct.pack("<I", 3) + b"SOL" + struct.pack("<I", 4) + b"USDT"
           + struct.pack("<QQQ", 10**12, 10**15, 10**18) + struct.pack("<qqq", -5, 1_700_000_000, 3600)
           + bytes(USER) + struct.pack("<BHH?QqB", 100, 1000, 500, True, 150_250_000, 1_700_000_001, 253))
    decoded = idl.decode_account("Market", raw)
    assert decoded["base_asset"] == "SOL" and decoded["quote_asset"] == "USDT"
    assert decoded["funding_rate"] == -5 and decoded["authority"] == USER and decoded["is_active"] is True
    assert decoded["last_oracle_price"] == 150_250_000 and decoded["bump"] == 253
    assert idl.encode_account("Market", decoded) == raw


def test_decoding_refuses_the_wrong_account_type_and_short_data(idl: Idl) -> None:
    with pytest.raises(InvalidInput, match="not a Market"):
        idl.decode_account("Market", position_bytes(idl))
    with pytest.raises(InvalidInput, match="too short"):
        idl.decode_account("Position", position_bytes(idl)[:100])
    assert idl.account_type(position_bytes(idl)) == "Position"


SYNTHETIC = {
    "address": PROGRAM_ID, "metadata": {"name": "synthetic"}, "instructions": [], "accounts": [], "errors": [],
    "types": [
        {"name": "Shape", "type": {"kind": "enum", "variants": [
            {"name": "Dot"}, {"name": "Circle", "fields": [{"name": "radius", "type": "u32"}]},
            {"name": "Pair", "fields": ["i8", "bool"]}]}},
        {"name": "Everything", "type": {"kind": "struct", "fields": [
            {"name": "big", "type": "u128"}, {"name": "neg", "type": "i128"}, {"name": "name", "type": "string"},
            {"name": "blob", "type": "bytes"}, {"name": "maybe", "type": {"option": "u16"}},
            {"name": "none", "type": {"option": "u16"}}, {"name": "items", "type": {"vec": "i32"}},
            {"name": "fixed", "type": {"array": ["u8", 3]}},
            {"name": "shapes", "type": {"vec": {"defined": {"name": "Shape"}}}},
        ]}},
    ],
}


def test_every_borsh_kind_round_trips_with_hand_checked_bytes() -> None:
    codec = Idl(SYNTHETIC, PROGRAM_ID)
    value = {"big": 2**100 + 5, "neg": -(2**90), "name": "héllo", "blob": b"\x00\xff", "maybe": 7, "none": None,
             "items": [-1, 2], "fixed": [1, 2, 3], "shapes": ["Dot", {"Circle": {"radius": 9}}, {"Pair": [-2, True]}]}
    raw = codec.encode({"defined": {"name": "Everything"}}, value)
    expected = ((2**100 + 5).to_bytes(16, "little") + (-(2**90)).to_bytes(16, "little", signed=True)
                + struct.pack("<I", 6) + "héllo".encode() + struct.pack("<I", 2) + b"\x00\xff"
                + b"\x01" + struct.pack("<H", 7) + b"\x00" + struct.pack("<Iii", 2, -1, 2) + bytes([1, 2, 3])
                + struct.pack("<I", 3) + b"\x00" + b"\x01" + struct.pack("<I", 9)
                + b"\x02" + struct.pack("<b?", -2, True))
    assert raw == expected
    decoded, end = codec.decode({"defined": {"name": "Everything"}}, raw)
    assert end == len(raw)
    assert decoded == value


def test_program_errors_are_read_by_name_not_number(idl: Idl) -> None:
    # The binary numbers PositionAlreadyClosed 6024; the IDL lists it as 6025 (and 6024 as OrderExpirationTooLong).
    logs = ["Program C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw invoke [1]",
            "Program log: Instruction: ClosePosition",
            "Program log: AnchorError thrown in programs/quantdesk-perp-dex/src/instructions/"
            "position_management.rs:119. Error Code: PositionAlreadyClosed. Error Number: 6024. "
            "Error Message: Position already closed.",
            "Program C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw failed: custom program error: 0x1788"]
    failure = idl.failure_from_logs(logs)
    assert (failure.kind, failure.name, failure.message) == ("anchor", "PositionAlreadyClosed",
                                                             "Position already closed")
    by_number = next(e for e in idl.raw["errors"] if e["code"] == 6024)
    assert by_number["name"] == "OrderExpirationTooLong"


@pytest.mark.parametrize("logs", [
    ["Program log: Instruction: OpenPosition",
     "Program log: panicked at programs/quantdesk-perp-dex/src/margin.rs:38:37:",
     "attempt to subtract with overflow",
     "Program C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw failed: SBF program panicked"],
    ["Program log: panicked at programs/quantdesk-perp-dex/src/margin.rs:38:37:\nattempt to subtract with overflow"],
    ["Program log: panicked at 'attempt to subtract with overflow', programs/quantdesk-perp-dex/src/margin.rs:38:37"],
])
def test_panics_are_read_as_their_message(idl: Idl, logs: list[str]) -> None:
    failure = idl.failure_from_logs(logs)
    assert failure.kind == "panic"
    assert failure.message == "attempt to subtract with overflow (programs/quantdesk-perp-dex/src/margin.rs:38:37)"


def test_runtime_failures_keep_the_reason_line(idl: Idl) -> None:
    logs = ["Program 11111111111111111111111111111111 invoke [1]",
            "Transfer: insufficient lamports 995000, need 100000000",
            "Program 11111111111111111111111111111111 failed: custom program error: 0x1"]
    assert str(idl.failure_from_logs(logs)) == ("Transfer: insufficient lamports 995000, need 100000000 "
                                                "(custom program error: 0x1)")
    assert str(idl.failure_from_logs([], "the fee payer has no SOL")) == "the fee payer has no SOL"
