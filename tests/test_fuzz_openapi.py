"""Schemathesis against /api/openapi.json of a real gunicorn server: no input may produce a 5xx."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_fuzz_finds_no_server_errors(live_server, tmp_path: Path) -> None:
    schema = (ROOT / "examples" / "quickstart" / "schema.yaml").read_text()
    server = live_server(schema=schema)
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [cli, "run", f"{server.url}/api/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "40", "--seed", "20261129", "--request-timeout", "10",
         "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert " passed" in output and "generated" in output
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-4000:]
