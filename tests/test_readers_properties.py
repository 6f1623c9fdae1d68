"""Property tests of the readers: any numeric manifest or label table reads back as written."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meltloc.labels import read_labels, write_labels
from meltloc.manifest import read_manifest, write_manifest

depth = st.floats(min_value=13.75, max_value=2120.0, allow_nan=False).map(lambda d: round(d, 2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tops=st.lists(depth, min_size=1, max_size=12, unique=True))
def test_a_written_manifest_reads_back_with_every_section(tmp_path, tops):
    table = pd.DataFrame({"image": [f"{26 + 3 * i}.png" for i in range(len(tops))], "top_m": tops,
                          "bottom_m": [t + 1.65 for t in tops]})
    write_manifest(table, tmp_path / "m.tab", tmp_path / "m.csv")
    for name in ("m.tab", "m.csv"):
        got = read_manifest(tmp_path / name).table
        assert list(got["image"]) == list(table["image"])
        assert (got["top_m"] - table["top_m"]).abs().max() < 1e-6
        assert (got["bottom_m"] - table["bottom_m"]).abs().max() < 1e-3


row = st.tuples(
    st.floats(min_value=14.0, max_value=2100.0, allow_nan=False),
    st.floats(min_value=0.0, max_value=0.02, allow_nan=False),
    st.sampled_from(["meltLayer", "meltLens", "meltLayer uncertain", "indication of bubble free layer or patch",
                     "something else"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=20))
def test_every_label_row_is_either_read_or_reported_with_its_row(tmp_path, rows):
    table = pd.DataFrame({
        "bag": [None] * len(rows),
        "depth from": [round(d, 4) for d, _, _ in rows],
        "depth to": [round(d + t, 4) if kind != "meltLens" else round(d, 4) for d, t, kind in rows],
        "age (b2k)": [1.0] * len(rows), "age (CE)": [1999.0] * len(rows),
        "type of feature": [kind for _, _, kind in rows],
    })
    write_labels(table, tmp_path / "l.csv")
    got = read_labels(tmp_path / "l.csv")
    reported = {p.row for p in got.problems}
    read = set(got.table["line"])
    assert read.isdisjoint(reported)
    assert read | reported == set(range(2, len(rows) + 2))
    assert (got.table["depth_to_m"] >= got.table["depth_from_m"]).all()
    unknown = {i + 2 for i, (_, _, kind) in enumerate(rows) if kind == "something else"}
    assert unknown <= reported
