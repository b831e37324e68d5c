"""Damaged bags: a truncated MCAP, an MCAP with a corrupt chunk (zstd, and CRC-protected uncompressed), a
sqlite3 file with a corrupt page. Each gives a clear error and writes nothing; ``--salvage`` keeps the frames
before the damage (they equal the first frames converted from the intact bag)."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture helper (importlib mode)
from sim_bag_fixture import write_sim_bag  # noqa: E402

from smolvla_train.bag2lerobot import ConvertOptions, convert, main  # noqa: E402
from smolvla_train.bagio import BagError, open_bag  # noqa: E402
from smolvla_train.lerobot_dataset import DatasetReader  # noqa: E402


def _copy_bag(src: Path, dst: Path) -> Path:
    """Copy a bag directory under a new name (file and metadata.yaml renamed consistently)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name == "metadata.yaml":
            (dst / f.name).write_text(f.read_text().replace(src.name, dst.name))
        else:
            shutil.copy(f, dst / f.name.replace(src.name, dst.name))
    return dst


def _data_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def _chunks(path: Path) -> list[tuple[int, int]]:
    """(start offset, length) of every chunk record, from the MCAP summary."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    return [(c.chunk_start_offset, c.chunk_length) for c in summary.chunk_indexes]


def _chunk_records_offset(data: bytes, start: int) -> int:
    """Offset of a chunk's records: opcode, length, start/end time, size, crc, compression string, length."""
    comp_len = struct.unpack_from("<I", data, start + 1 + 8 + 8 + 8 + 8 + 4)[0]
    return start + 1 + 8 + 8 + 8 + 8 + 4 + 4 + comp_len + 8


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damage")
    good = root / "good"
    write_sim_bag(good, seconds=4.0, width=128, height=96)  # ~9 MB: 9 uncompressed chunks
    goodz = root / "goodz"
    write_sim_bag(goodz, seconds=4.0, width=128, height=96, compression=True)
    goodsql = root / "goodsql"
    write_sim_bag(goodsql, seconds=4.0, width=128, height=96, storage="sqlite3")
    out = {"good": good, "goodz": goodz, "goodsql": goodsql}

    trunc = _copy_bag(good, root / "truncated")
    f = _data_file(trunc)
    os.truncate(f, f.stat().st_size // 2)
    out["truncated"] = trunc

    # the middle chunk's zstd frame overwritten from its start (magic number and frame header). Bytes changed
    # further inside a zstd stream can decode to other bytes of the same length without an error (rosbags
    # writes neither a zstd content checksum nor the chunk CRC): where 64 bytes landed by file size alone
    # decided whether this case was detectable (it stopped being when the fixture's frame ids grew)
    corruptz = _copy_bag(goodz, root / "corrupt_zstd")
    f = _data_file(corruptz)
    start, _length = _chunks(f)[len(_chunks(f)) // 2]
    with open(f, "r+b") as fh:
        fh.seek(_chunk_records_offset(f.read_bytes(), start))
        fh.write(b"\xa5" * 64)
    out["corrupt_zstd"] = corruptz

    # uncompressed chunks with their CRCs filled in (as ros2 bag record writes them), then one chunk's
    # message bytes changed: only the CRC check can notice
    crc = _copy_bag(good, root / "corrupt_crc")
    f = _data_file(crc)
    data = bytearray(f.read_bytes())
    chunks = _chunks(f)
    for start, length in chunks:
        rec = _chunk_records_offset(bytes(data), start)
        struct.pack_into("<I", data, start + 1 + 8 + 8 + 8 + 8, zlib.crc32(bytes(data[rec : start + length])))
    start, length = chunks[len(chunks) // 2]
    data[start + length // 2 : start + length // 2 + 32] = b"\x5a" * 32
    f.write_bytes(bytes(data))
    out["corrupt_crc"] = crc

    badsql = _copy_bag(goodsql, root / "corrupt_sqlite")
    f = _data_file(badsql)
    page = 4096
    with open(f, "r+b") as fh:
        fh.seek((f.stat().st_size // page // 2) * page)
        fh.write(b"\x00" * page)
    out["corrupt_sqlite"] = badsql
    return out


@pytest.fixture(scope="module")
def intact(bags: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetReader]:
    root = tmp_path_factory.mktemp("intact")
    out = {}
    for name in ("good", "goodz", "goodsql"):
        convert([bags[name]], root / name, ConvertOptions(progress=False, codec="h264"))
        out[name] = DatasetReader(root / name)
    return out


CASES = {
    "truncated": ("good", "truncated"),
    "corrupt_zstd": ("goodz", "corrupt chunk"),
    "corrupt_crc": ("good", "CRC mismatch"),
    "corrupt_sqlite": ("goodsql", "corrupt sqlite3"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_bag_gives_a_clear_error_and_writes_nothing(bags, tmp_path: Path, case: str, capsys) -> None:
    _, words = CASES[case]
    code = main([str(bags[case]), "-o", str(tmp_path / "ds"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert words in err and "--salvage" in err and bags[case].name in err, err
    assert not (tmp_path / "ds").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_salvage_keeps_the_frames_before_the_damage(bags, intact, tmp_path: Path, case: str) -> None:
    ref_name, _ = CASES[case]
    report = convert(
        [bags[case]], tmp_path / "ds", ConvertOptions(progress=False, codec="h264", salvage=True)
    )
    notes = report["bags"][0]["notes"]
    assert notes and "lost" in notes[0]
    got = DatasetReader(tmp_path / "ds").episode(0)
    ref = intact[ref_name].episode(0)
    n = len(got.state)
    assert 10 < n < len(ref.state)  # something before the damage, not everything
    np.testing.assert_array_equal(got.state[: n - 1], ref.state[: n - 1])
    np.testing.assert_array_equal(got.action[: n - 1], ref.action[: n - 1])


def test_reading_stops_at_the_damage_only_with_salvage(bags) -> None:
    with pytest.raises(BagError, match="truncated"):
        open_bag(bags["truncated"])
    with open_bag(bags["truncated"], salvage=True) as bag, open_bag(bags["good"]) as good:
        n = sum(1 for _ in bag.messages(list(bag.topics)))
        total = sum(1 for _ in good.messages(list(good.topics)))
        assert 0 < n < total
