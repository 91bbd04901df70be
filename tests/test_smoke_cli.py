def test_status_json(cli):
    import json
    r = cli("status", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["schema_version"] == 10


def test_missing_db(tmp_path):
    from tests.conftest import Cli
    r = Cli(tmp_path / "nope.db")("status")
    assert r.exit_code == 66
    assert r.stderr == f"Error: no database at {tmp_path / 'nope.db'}: run `zos init-db` to create it\n"
