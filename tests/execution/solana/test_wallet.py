"""The wallet file: a round trip gives back the same key, a wrong passphrase or an edited file does not unlock, and no
form of the secret (bytes, the CLI's JSON array, base58, base64, hex) is ever written."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from solders.keypair import Keypair

from mikey.errors import WalletError
from mikey.execution.solana import wallet

PASSPHRASE = "correct horse battery staple"


def cli_keypair_file(path: Path, keypair: Keypair) -> Path:
    path.write_text(json.dumps(list(bytes(keypair))))
    return path


def test_import_round_trip(tmp_path: Path) -> None:
    keypair = Keypair()
    src = cli_keypair_file(tmp_path / "id.json", keypair)
    dest = tmp_path / "home" / "wallet.json"

    assert wallet.import_keypair(src, dest, PASSPHRASE) == keypair.pubkey()

    loaded = wallet.load_keypair(dest, PASSPHRASE)
    assert bytes(loaded) == bytes(keypair)
    assert wallet.wallet_pubkey(dest) == keypair.pubkey()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert src.exists()  # the user's own copy is theirs to delete


def test_file_format_and_no_secret_bytes(tmp_path: Path) -> None:
    keypair = Keypair()
    dest = tmp_path / "wallet.json"
    wallet.save_keypair(keypair, dest, PASSPHRASE)
    raw = dest.read_bytes()
    document = json.loads(raw)

    assert document["version"] == 1 and document["kdf"] == "scrypt" and document["cipher"] == "aes-256-gcm"
    params = document["kdf_params"]
    assert (params["n"], params["r"], params["p"]) == (2**15, 8, 1)
    assert len(base64.b64decode(params["salt"])) == 16
    assert len(base64.b64decode(document["nonce"])) == 12
    assert document["public_key"] == str(keypair.pubkey())

    secret = bytes(keypair)
    seed = secret[:32]
    for form in (secret, seed, json.dumps(list(secret)).encode(), json.dumps(list(seed))[1:-1].encode(),
                 str(keypair).encode(), base64.b64encode(secret), base64.b64encode(seed), seed.hex().encode()):
        assert form not in raw
    for start in range(0, 32 - 8 + 1):  # not even a fragment of the seed
        assert seed[start:start + 8] not in raw


def test_wrong_passphrase(tmp_path: Path) -> None:
    dest = tmp_path / "wallet.json"
    wallet.new_keypair(dest, PASSPHRASE)
    with pytest.raises(WalletError, match="wrong passphrase or corrupt wallet file"):
        wallet.load_keypair(dest, "not it")


def test_an_edited_public_key_does_not_unlock(tmp_path: Path) -> None:
    dest = tmp_path / "wallet.json"
    wallet.new_keypair(dest, PASSPHRASE)
    document = json.loads(dest.read_text())
    document["public_key"] = str(Keypair().pubkey())
    dest.write_text(json.dumps(document))
    with pytest.raises(WalletError, match="wrong passphrase or corrupt wallet file"):
        wallet.load_keypair(dest, PASSPHRASE)


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="no wallet at"):
        wallet.load_keypair(tmp_path / "absent.json", PASSPHRASE)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(WalletError, match="corrupt wallet file"):
        wallet.load_keypair(broken, PASSPHRASE)


def test_an_existing_wallet_is_never_overwritten_silently(tmp_path: Path) -> None:
    dest = tmp_path / "wallet.json"
    first = wallet.new_keypair(dest, PASSPHRASE)
    with pytest.raises(WalletError, match="already exists"):
        wallet.new_keypair(dest, PASSPHRASE)
    assert wallet.load_keypair(dest, PASSPHRASE).pubkey() == first


@pytest.mark.parametrize("content", ["[1, 2, 3]", json.dumps([300] * 64), '{"secret": 1}', "nope"])
def test_import_refuses_what_is_not_a_cli_keypair(tmp_path: Path, content: str) -> None:
    src = tmp_path / "id.json"
    src.write_text(content)
    with pytest.raises(WalletError):
        wallet.import_keypair(src, tmp_path / "wallet.json", PASSPHRASE)
    assert not (tmp_path / "wallet.json").exists()


def test_import_refuses_mismatched_halves(tmp_path: Path) -> None:
    src = tmp_path / "id.json"
    src.write_text(json.dumps(list(bytes(Keypair())[:32] + bytes(Keypair().pubkey()))))
    with pytest.raises(WalletError):
        wallet.import_keypair(src, tmp_path / "wallet.json", PASSPHRASE)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="empty passphrase"):
        wallet.new_keypair(tmp_path / "wallet.json", "")


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIKEY_WALLET_PASSPHRASE", "from-env")
    assert wallet.passphrase_from_env_or_prompt(confirm=True) == "from-env"


def test_no_passphrase_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(WalletError, match="MIKEY_WALLET_PASSPHRASE"):
        wallet.passphrase_from_env_or_prompt(confirm=False)


def test_prompt_confirms_a_new_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first", "second"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(WalletError, match="differ"):
        wallet.passphrase_from_env_or_prompt(confirm=True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "same")
    assert wallet.passphrase_from_env_or_prompt(confirm=True) == "same"
