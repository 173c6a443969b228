"""The signing key at rest: a Solana keypair encrypted with a passphrase (scrypt + AES-256-GCM), never plain text.

The Solana CLI keeps keys as a JSON array of 64 bytes anyone who can read the file can spend from. MIKEY imports such
a file once and keeps only the encrypted form::

    {"version": 1, "public_key": "<base58>",
     "kdf": "scrypt", "kdf_params": {"n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
     "cipher": "aes-256-gcm", "nonce": "<base64, 12 bytes>", "ciphertext": "<base64>"}

The public key stays in clear (so a wallet can be named without unlocking it) and is bound to the ciphertext as
AES-GCM associated data: editing it makes the file fail to unlock instead of pairing a key with the wrong address.
Files are created 0600, written to a temporary file and renamed, so a crash never leaves half a wallet.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import secrets
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from mikey.errors import WalletError

VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
NONCE_BYTES = 12
PASSPHRASE_ENV = "MIKEY_WALLET_PASSPHRASE"
MAX_SCRYPT_N = 2**20  # a file asking for more would make unlocking a memory bomb


def import_keypair(src_path: Path, dest_path: Path, passphrase: str, *, overwrite: bool = False) -> Pubkey:
    """Encrypt the Solana CLI keypair file at ``src_path`` (a JSON array of 64 integers) into ``dest_path``.

    The source file is left as it is: deleting the user's only copy of a key is not MIKEY's call.
    """
    try:
        raw = json.loads(Path(src_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WalletError(f"cannot read the keypair file {src_path}: {exc}") from exc
    if (not isinstance(raw, list) or len(raw) != 64
            or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in raw)):
        raise WalletError(f"{src_path} is not a Solana keypair file (a JSON array of 64 integers from 0 to 255)")
    try:
        keypair = Keypair.from_bytes(bytes(raw))
    except ValueError as exc:
        raise WalletError(f"{src_path} holds an invalid keypair: {exc}") from exc
    if bytes(keypair.pubkey()) != bytes(raw[32:]):
        raise WalletError(f"{src_path}: the public half does not match the secret half")
    save_keypair(keypair, dest_path, passphrase, overwrite=overwrite)
    return keypair.pubkey()


def new_keypair(dest: Path, passphrase: str, *, overwrite: bool = False) -> Pubkey:
    """Generate a fresh keypair and store it encrypted at ``dest``."""
    keypair = Keypair()
    save_keypair(keypair, dest, passphrase, overwrite=overwrite)
    return keypair.pubkey()


def save_keypair(keypair: Keypair, dest: Path, passphrase: str, *, overwrite: bool = False) -> None:
    """Write ``keypair`` encrypted under ``passphrase``; refuses to replace an existing wallet unless asked."""
    _check_passphrase(passphrase)
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise WalletError(f"a wallet already exists at {dest}; move it away first (it may hold the only copy of a key)")
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    public_key = str(keypair.pubkey())
    key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(keypair), _associated_data(public_key))
    document = {
        "version": VERSION,
        "public_key": public_key,
        "kdf": "scrypt",
        "kdf_params": {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
        "cipher": "aes-256-gcm",
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
    }
    _write_private(dest, json.dumps(document, indent=2) + "\n")


def load_keypair(path: Path, passphrase: str) -> Keypair:
    """Unlock the wallet at ``path``. A wrong passphrase and a tampered file are the same error: GCM cannot tell."""
    path = Path(path)
    if not path.exists():
        raise WalletError(f"no wallet at {path}: import one with `mikey wallet import <keypair.json>`")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("version") != VERSION or document.get("kdf") != "scrypt" \
                or document.get("cipher") != "aes-256-gcm":
            raise WalletError(f"{path}: unsupported wallet format (version {document.get('version')!r})")
        params = document["kdf_params"]
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(params["salt"], validate=True)
        nonce = base64.b64decode(document["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
        public_key = str(document["public_key"])
    except WalletError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WalletError(f"wrong passphrase or corrupt wallet file {path}: {exc}") from exc
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise WalletError(f"corrupt wallet file {path}: implausible scrypt parameters n={n} r={r} p={p}")
    key = _derive(passphrase, salt, n, r, p)
    try:
        secret = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(public_key))
    except (InvalidTag, ValueError):
        raise WalletError(f"wrong passphrase or corrupt wallet file {path}") from None
    keypair = Keypair.from_bytes(secret)
    if str(keypair.pubkey()) != public_key:
        raise WalletError(f"corrupt wallet file {path}: the key does not match its public key")
    return keypair


def wallet_pubkey(path: Path) -> Pubkey:
    """The wallet's address, read without the passphrase."""
    try:
        return Pubkey.from_string(json.loads(Path(path).read_text(encoding="utf-8"))["public_key"])
    except FileNotFoundError:
        raise WalletError(f"no wallet at {path}: import one with `mikey wallet import <keypair.json>`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WalletError(f"corrupt wallet file {path}: {exc}") from exc


def passphrase_from_env_or_prompt(confirm: bool) -> str:
    """``MIKEY_WALLET_PASSPHRASE`` if set, else asked on the terminal (twice when ``confirm``, for a new wallet).

    Without a terminal there is no one to ask, so that is an error rather than a hang or an echoed prompt.
    """
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise WalletError(f"the wallet needs a passphrase: set {PASSPHRASE_ENV} or run MIKEY in a terminal")
    passphrase = getpass.getpass("Wallet passphrase: ")
    _check_passphrase(passphrase)
    if confirm and getpass.getpass("Repeat the passphrase: ") != passphrase:
        raise WalletError("the two passphrases differ")
    return passphrase


def _check_passphrase(passphrase: str) -> None:
    if not passphrase:
        raise WalletError("an empty passphrase would leave the key unprotected")


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _associated_data(public_key: str) -> bytes:
    return f"mikey-wallet/v{VERSION}/{public_key}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _write_private(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is filtered by the umask; the wallet must not be
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
