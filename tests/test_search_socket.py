"""Search answered by the running daemon over its socket: an in-process service with a
real encoder on a dev face, a client the daemon refuses (wrong key, bad request) while
it goes on answering, and `facelint search` encoding by itself when no daemon runs."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path

import pytest

from daemon import cli
from daemon.common import searchclient
from daemon.config import Settings
from daemon.notify import SystemdNotifier
from daemon.service import Service

PHOTO = ("Anthony_Hopkins", "Anthony_Hopkins_0001.jpg")


@pytest.fixture(scope="module")
def served(
    scanned_dev: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Path]]:
    """An in-process daemon (opened, not stepped: serving is its own thread) on a copy of
    the scanned dev store; (service, the photo to look for)."""
    import shutil

    root, db = scanned_dev
    base = tmp_path_factory.mktemp("sock")
    own = base / "f.duckdb"
    shutil.copy2(db, own)
    settings = Settings(root=root, db=own, workers=1, temp_sensor="")
    service = Service(settings, temperature=lambda: 50.0, notifier=SystemdNotifier({}))
    service.open()
    try:
        assert service.search_server is not None, "the service serves no search socket"
        yield service, root / PHOTO[0] / PHOTO[1]
    finally:
        service.close()
    assert not settings.search_socket_path().exists(), "close() left the socket behind"


def ask(service: Service, photo: Path, n: int = 5) -> dict:
    s = service.s
    return searchclient.ask(
        s.search_socket_path(), s.search_key_path(), photo.read_bytes(), photo.name, n
    )


def test_the_running_daemon_answers_a_search_over_its_socket(served):
    service, photo = served
    s = service.s
    # Owner-only, both of them: another user can neither connect nor read the key.
    for path in (s.search_socket_path(), s.search_key_path()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    result = ask(service, photo)
    assert result["faces"] == 1 and len(result["results"]) == 5
    best = result["results"][0]
    assert (best["folder"], best["path"]) == (PHOTO[0], "/".join(PHOTO))
    assert best["score"] > 0.9
    assert result["searched_by"].startswith("the facelint daemon")
    # A second search reuses the loaded model: no load, only an encode and a read.
    again = ask(service, photo, n=3)
    assert [h["path"] for h in again["results"]] == [h["path"] for h in result["results"][:3]]
    assert service.search_server.answered >= 2


def test_a_refused_client_is_told_why_and_the_daemon_goes_on(served, tmp_path):
    service, photo = served
    s = service.s
    server = service.search_server
    refused = server.refused
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"not the daemon's key")
    with pytest.raises(searchclient.SearchRefused, match="refused this client"):
        searchclient.ask(s.search_socket_path(), wrong, photo.read_bytes(), photo.name, 3)

    def raw() -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(s.search_socket_path()))
        conn = Connection(sock.detach())
        key = s.search_key_path().read_bytes()
        answer_challenge(conn, key)
        deliver_challenge(conn, key)
        return conn

    for request, said in (
        (b"not json", "not JSON"),
        (json.dumps({"op": "delete everything"}).encode(), 'expected {"op": "search"'),
        (json.dumps({"op": "search", "n": 0, "size": 10}).encode(), "n must be"),
    ):
        conn = raw()
        conn.send_bytes(request)
        answer = json.loads(conn.recv_bytes())
        conn.close()
        assert answer["ok"] is False and said in answer["error"], answer
        assert answer["error"].startswith("bad request")
    # Not a face: the daemon's own words, as the CLI would give them.
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"hello")
    with pytest.raises(searchclient.SearchRefused, match="no usable face"):
        ask(service, text)
    assert server.refused >= refused + 4
    # Still serving.
    assert ask(service, photo, n=1)["results"][0]["folder"] == PHOTO[0]


def test_facelint_search_encodes_by_itself_when_no_daemon_runs(dev_copy, capsys):
    root, db = dev_copy
    photo = root / PHOTO[0] / PHOTO[1]
    assert not Settings(db=db).search_socket_path().exists()
    code = cli.main(["search", str(photo), "--db", str(db), "--json", "-n", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no daemon answers searches for this store: encoding the photo here" in captured.err
    result = json.loads(captured.out)
    assert result["results"][0]["path"] == "/".join(PHOTO)
    assert result["searched_by"].startswith("this command")
