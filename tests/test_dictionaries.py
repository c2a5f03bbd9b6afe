"""The dictionary-corpus recipe on small dictd files and .deb packages written by the test (never the network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from heron.errors import HeronError
from heron.eval import dictionaries as dic
from heron.eval.datasets import load_dataset

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    """dictd's base64 number, written independently of the parser (most significant digit first)."""
    digits = ALPHABET[n % 64]
    while n >= 64:
        n //= 64
        digits = ALPHABET[n % 64] + digits
    return digits


def dictd(entries: list[tuple[list[str], str]]) -> tuple[bytes, bytes]:
    """An ``.index`` and a ``.dict.dz`` holding ``entries`` (headwords sharing one definition block)."""
    body, lines = b"", []
    for headwords, text in entries:
        raw = text.encode("utf-8")
        for headword in headwords:
            lines.append(f"{headword}\t{b64(len(body))}\t{b64(len(raw))}\n")
        body += raw
    index = "".join(sorted(lines, key=str.lower)).encode("utf-8")
    return index, gzip.compress(body, mtime=0)


GCIDE = [
    (["00-database-short"], "00-database-short\n   test dictionary\n"),
    (["Bank"], "Bank \\Bank\\ (b[a^][ng]k), n. [OE. banke.]\n   1. A mound or ridge of earth.\n"
               "      [1913 Webster]\n\n   2. A financial institution that accepts deposits.\n"
               "      [WordNet 1.5]\n"),
    (["Bank"], "Bank \\Bank\\, v. t.\n   To deposit in a bank.\n   [1913 Webster] Banker\n"),
    (["Banker"], "Banker \\Bank\"er\\, n.\n   One who conducts the business of banking.\n   [1913 Webster]\n"),
    (["Dog", "Dogs"], "Dog \\Dog\\, n.\n   A carnivorous quadruped kept as a pet.\n   [1913 Webster]\n"),
    (["Cat"], "Cat \\Cat\\, n.\n   feline mammal usually having thick soft fur\n\n   Syn: true cat\n"
              "        [WordNet 1.5 +PJC]\n"),
    (["Aerial"], "A[\"e]rial \\A*[\"e]\"ri*al\\, a.\n   Of or pertaining to the air.\n   [1913 Webster]\n"),
    # WordNet's gloss copied without a WordNet tag: pet is not sampled
    (["Pet"], "Pet \\Pet\\, n.\n   A domesticated animal kept for companionship or amusement.\n   [PJC]\n"),
]
WORDNET = [
    (["00-database-short"], "00-database-short\n   WordNet\n"),
    (["bank"], "bank\n    n 1: a financial institution that accepts deposits and channels\n"
               "         the money into lending activities; \"he cashed a check at the\n"
               "         bank\" [syn: {depository financial institution}, {bank}]\n"
               "    2: sloping land (especially the slope beside a body of water)\n"),
    (["banker"], "banker\n    n 1: a person who owns or is an officer of a bank\n"),
    (["dog"], "dog\n    n 1: a member of the genus Canis that has been domesticated by man\n"
              "    v 1: go after with the intent to catch\n"),
    (["cat"], "cat\n    n 1: feline mammal usually having thick soft fur\n"),
    (["aerial"], "aerial\n    adj 1: existing or living or growing or operating in the air\n"),
    (["pet"], "pet\n    n 1: a domesticated animal kept for companionship or amusement\n"),
]


def ar_archive(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii")
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def deb(files: dict[str, bytes]) -> bytes:
    """A minimal .deb: ``debian-binary``, an empty control tarball and ``data.tar.xz`` holding ``files``."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"./usr/share/dictd/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:gz"):
        pass
    return ar_archive({"debian-binary": b"2.0\n", "control.tar.gz": control.getvalue(),
                       "data.tar.xz": data.getvalue()})


@pytest.fixture
def debs(tmp_path, monkeypatch):
    """A folder with the two fixture packages, pinned in ``PACKAGES`` by their sha256."""
    folder = tmp_path / "debs"
    folder.mkdir()
    for package, name, entries in (("dict-gcide", "gcide", GCIDE), ("dict-wn", "wn", WORDNET)):
        index, dz = dictd(entries)
        blob = deb({f"{name}.index": index, f"{name}.dict.dz": dz})
        version = dic.PACKAGES[package][0]
        monkeypatch.setitem(dic.PACKAGES, package, (version, hashlib.sha256(blob).hexdigest(), name))
        (folder / dic.deb_filename(package)).write_bytes(blob)
    return folder


def test_dictd_numbers():
    assert [dic.dictd_number(s) for s in ("A", "B", "/", "BA", "CAB")] == [0, 1, 63, 64, 2 * 4096 + 1]
    assert all(dic.dictd_number(b64(n)) == n for n in (0, 5, 63, 64, 4095, 4096, 39952321))
    with pytest.raises(ValueError):
        dic.dictd_number("A=")


def test_read_dictd_gives_each_headwords_text():
    index, dz = dictd(GCIDE)
    parsed = dic.read_dictd("gcide", index, dz)
    texts = {}
    for entry in parsed.entries:
        texts.setdefault(entry.headword, []).append(parsed.block(entry.offset, entry.length).decode())
    for headwords, text in GCIDE:
        for headword in headwords:
            assert text in texts[headword]
    assert len(parsed.entries) == sum(len(h) for h, _ in GCIDE)


def test_read_dictd_refuses_a_range_past_the_end_and_bad_digits():
    _, dz = dictd(GCIDE)
    size = len(gzip.decompress(dz))
    with pytest.raises(HeronError, match=r"gcide.index:2: range"):
        dic.read_dictd("gcide", f"a\tA\tB\nb\t{b64(size)}\tB\n".encode(), dz)
    with pytest.raises(HeronError, match=r"gcide.index:1: bad offset"):
        dic.read_dictd("gcide", b"a\tA-\tB\n", dz)
    with pytest.raises(HeronError, match=r"gcide.index:1: expected"):
        dic.read_dictd("gcide", b"a\tA\n", dz)
    with pytest.raises(HeronError, match=r"gcide.dict.dz: not a readable"):
        dic.read_dictd("gcide", b"a\tA\tB\n", b"not gzip")


def test_clean_entry_drops_wordnet_parts_and_markup():
    clean = dic.clean_gcide_entry(GCIDE[1][1])
    assert clean.text == "Bank, n. [OE. banke.] 1. A mound or ridge of earth."
    assert (clean.kept_parts, clean.dropped_parts) == (1, 1)
    mixed = "X \\X\\, n.\n   Some text.\n   [1913 Webster + WordNet 1.5]\n\n   More.\n   [PJC]\n"
    assert dic.clean_gcide_entry(mixed).text == "More."
    assert dic.clean_gcide_entry("Y \\Y\\, a.\n   A[\"e]rial; [Obs.] s[ae]cular.\n   [1913 Webster]\n").text \
        == "Y, a. Aerial; [Obs.] saecular."
    # the next entry's headword left by dictd on the last tag's line is not the entry's text
    assert dic.clean_gcide_entry(GCIDE[2][1]).text == "Bank, v. t. To deposit in a bank."
    assert dic.clean_gcide_entry(GCIDE[5][1]).text == ""


def test_wordnet_gloss_is_the_first_sense_without_examples_or_synonyms():
    senses = dic.wordnet_senses(WORDNET[1][1])
    assert len(senses) == 2 and senses[1] == "sloping land (especially the slope beside a body of water)"
    assert dic.gloss_of(senses[0]) == "a financial institution that accepts deposits and channels the money " \
                                      "into lending activities"
    assert dic.wordnet_senses(WORDNET[3][1])[1] == "go after with the intent to catch"


def test_ar_reader_refuses_a_non_archive(tmp_path):
    path = tmp_path / "x.deb"
    path.write_bytes(b"PK\x03\x04 not an ar file")
    with pytest.raises(HeronError, match="not an ar archive"):
        dic.deb_files(path, ["gcide.index"])


def test_recipe_writes_the_task_and_is_deterministic(debs, tmp_path):
    first = dic.build_dictionaries(tmp_path / "one", seed=3, n_queries=4, debs=debs, log=lambda _: None)
    second = dic.build_dictionaries(tmp_path / "two", seed=3, n_queries=4, debs=debs, log=lambda _: None)
    assert first == second
    for name, digest in first["sha256"].items():
        assert hashlib.sha256((tmp_path / "one" / name).read_bytes()).hexdigest() == digest
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()

    ds = load_dataset(tmp_path / "one")
    docs = {d.id: d for d in ds.iter_corpus()}
    counts = first["counts"]
    # 8 entries but the metadata one; Cat is all WordNet, so 6 documents
    assert counts["gcide_entries"] == 7 and counts["entries_all_wordnet"] == 1 and len(docs) == 6
    # "[1913 Webster] Banker" ends the second Bank entry: the next entry's headword, cut
    assert counts["parts_dropped_wordnet"] == 2 and counts["trailing_headwords_cut"] == 1
    assert sorted(d.title for d in docs.values()) == ["Aerial", "Bank", "Bank", "Banker", "Dog; Dogs", "Pet"]
    assert all("WordNet" not in d.text and "financial" not in d.text for d in docs.values())
    assert next(d for d in docs.values() if d.title == "Aerial").text == "Aerial, a. Of or pertaining to the air."

    # shared with documents: aerial, bank, banker, dog, pet; pet's gloss is verbatim in its document
    assert (counts["shared_headwords"], counts["shared_gloss_verbatim_in_relevant"]) == (5, 1)
    queries = [json.loads(line) for line in (tmp_path / "one" / "queries.jsonl").read_text().splitlines()]
    assert sorted(q["headword"] for q in queries) == ["aerial", "bank", "banker", "dog"]
    assert [q["_id"] for q in queries] == ["q0000", "q0001", "q0002", "q0003"]
    assert set(ds.qrels("dev")) == {"q0000", "q0001"} and set(ds.qrels("test")) == {"q0002", "q0003"}
    relevant = {**ds.qrels("dev"), **ds.qrels("test")}
    for q in queries:
        expected = {d.id for d in docs.values() if q["headword"] in d.title.lower().split("; ")}
        assert relevant[q["_id"]] == {doc: 1 for doc in expected} and expected
    bank = next(q for q in queries if q["headword"] == "bank")
    assert bank["text"] == "a financial institution that accepts deposits and channels the money into lending " \
                           "activities"
    assert len(relevant[bank["_id"]]) == 2
    other = dic.build_dictionaries(tmp_path / "three", seed=4, n_queries=4, debs=debs, log=lambda _: None)
    assert other["sha256"]["corpus.jsonl"] == first["sha256"]["corpus.jsonl"]


def test_recipe_refuses_a_package_with_another_checksum(debs, tmp_path):
    path = debs / dic.deb_filename("dict-wn")
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(HeronError, match=r"dict-wn_.*sha256 .* is not the pinned"):
        dic.build_dictionaries(tmp_path / "out", n_queries=2, debs=debs, log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_recipe_refuses_too_few_candidate_headwords(debs, tmp_path):
    with pytest.raises(HeronError, match="only 4 headwords qualify"):
        dic.build_dictionaries(tmp_path / "out", n_queries=6, debs=debs, log=lambda _: None)


def test_command_prints_counts_and_checksums(debs, tmp_path):
    from typer.testing import CliRunner

    from heron.cli import app

    out = tmp_path / "dict"
    result = CliRunner().invoke(app, ["data", "dictionaries", str(out), "--debs", str(debs), "--queries", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "dictionaries.json").read_text())
    for name, digest in manifest["sha256"].items():
        assert f"sha256 {digest}  {name}" in result.output
    assert "documents" in result.output and manifest["counts"]["documents"] == 6
    missing = CliRunner().invoke(app, ["data", "dictionaries", str(tmp_path / "x"), "--debs", str(tmp_path / "no")])
    assert isinstance(missing.exception, HeronError) and "not found" in str(missing.exception)
