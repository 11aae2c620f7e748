"""CompletionStore: roundtrip, idempotent writes, partial reads, bad files, use from threads."""

import sqlite3
import threading

import pytest

from metaconf.engines import Completion, CompletionStore, TokenLogprob
from metaconf.errors import EngineError


def put(store, rows, key_prompt=None):
    store.put_many(rows, model="m", adapter="", params="{}", prompts=key_prompt or {})


def test_roundtrip_keeps_every_field(tmp_path):
    comp = Completion("héllo", [TokenLogprob("h", -0.5, {"h": -0.5, "x": -1.2})], "length", 7, 3)
    with CompletionStore(tmp_path / "sub" / "c.sqlite") as store:
        put(store, [("k", 0, comp)], {"k": [{"role": "user", "content": "q"}]})
        got = store.get_many(["k"], 1)
    assert got[("k", 0)].cached is True
    got[("k", 0)].cached = False
    assert got[("k", 0)] == comp
    with CompletionStore(tmp_path / "sub" / "c.sqlite") as again:  # survives reopening
        assert again.get_many(["k"], 1)[("k", 0)].text == "héllo"
        row = again.db.execute("SELECT model, adapter, params, prompt FROM completions").fetchone()
    assert row == ("m", "", "{}", '[{"role": "user", "content": "q"}]')


def test_put_is_idempotent_first_write_wins(tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    put(store, [("k", 0, Completion("first")), ("k", 1, Completion("b"))])
    put(store, [("k", 0, Completion("second")), ("k", 1, Completion("b"))])
    assert store.count() == 2
    assert store.get_many(["k"], 2)[("k", 0)].text == "first"


def test_n_larger_or_smaller_than_stored(tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    put(store, [("k", s, Completion(str(s))) for s in range(3)] + [("other", 0, Completion("o"))])
    assert sorted(store.get_many(["k"], 5)) == [("k", 0), ("k", 1), ("k", 2)]
    assert sorted(store.get_many(["k"], 2)) == [("k", 0), ("k", 1)]
    assert store.get_many(["missing"], 3) == {} and store.get_many([], 3) == {}


def test_many_keys_are_read_in_chunks(tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    put(store, [(f"k{i}", 0, Completion(str(i))) for i in range(1200)])
    got = store.get_many([f"k{i}" for i in range(1200)], 1)
    assert len(got) == 1200 and got[("k1199", 0)].text == "1199"


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not a database\n" * 100)
    with pytest.raises(EngineError, match=r"notes.sqlite: cannot open the completion store"):
        CompletionStore(bad)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE completions (a TEXT)").connection.commit()
    with pytest.raises(EngineError, match=r"other.sqlite: not a metaconf completion store"):
        CompletionStore(other)


def test_store_can_be_used_from_several_threads(tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    errors = []

    def work(t):
        try:
            for i in range(20):
                put(store, [(f"t{t}-{i}", 0, Completion("x"))])
                store.get_many([f"t{t}-{i}"], 1)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and store.count() == 80


def test_two_processes_style_connections_share_one_file(tmp_path):
    a = CompletionStore(tmp_path / "c.sqlite")
    b = CompletionStore(tmp_path / "c.sqlite")
    put(a, [("k", 0, Completion("from a"))])
    assert b.get_many(["k"], 1)[("k", 0)].text == "from a"
