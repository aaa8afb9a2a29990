import json


def test_run_succeeds_and_records_pins(stash):
    out = stash.run("tool=fx", "experiment=a", "value=5", "+extra=1", "~seed")
    assert out.returncode == 0, out.stderr
    (record,) = stash.runs()
    assert record["status"] == "succeeded"
