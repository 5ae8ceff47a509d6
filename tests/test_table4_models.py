"""Table 4's grid can be limited to some models' rows (--table4 --models=...): the run
plan runs its MLP rows at n = 50,000 and its convnet rows at a smaller n."""
import pytest

from rethinkgen_tf import grids


def test_table4_rows_of_some_models():
    every = grids.table4_points("paper", None)
    assert len(every) == len(grids.TABLE4)
    mlps = grids.table4_points("paper", None, models=["mlp_1x512", "mlp_3x512"])
    assert sorted(p.tag["model"] for p in mlps) == ["mlp_1x512", "mlp_3x512"]
    assert [p.tag for p in mlps] == [p.tag for p in every if p.tag["model"].startswith("mlp")]
    with pytest.raises(ValueError, match="Table 4 has no rows for linear"):
        grids.table4_points("paper", None, models=["linear"])
