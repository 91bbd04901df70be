"""A store to browse, and `zos browse` running on it as a real subprocess.

    store = make_store(tmp_path)            # reflect_world's community, reflected offline
    with BrowseServer(store, "--scope", "dm") as server:
        httpx.get(server.url + "zos/top_salience.json")

The community: alice, bob and carol hold the privacy-gate role; dave does not, but earned
salience before the gate was configured (as someone who lost the role). bob has a consented
DM with zos holding DM_CANARY, and a dm-scoped insight made from it. Carol once posted a bare
URL. Reflection ran with the gate configured, as `zos reflect` would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx
from dataclasses import dataclass
from pathlib import Path

from tests.reflect_world import GATE_ROLE, GUILD, SELF_ID, build_world
from zos_cli.config import Config
from zos_cli.reflect.run import RunOptions, run_layer
from zos_cli.store import db as database
from zos_cli.store import migrations

DM_CANARY = "QZXV-dm-canary"
TOKEN_CANARY = "QZXV-token-canary.abc.def"
BARE_URL = "https://glaze.example.org/notes"


@dataclass
class Store:
    db_path: Path
    config_path: Path
    ids: dict[str, str]            # name → user id
    dm_insight: str                # the content of bob's dm-scoped insight
    public_insight: str            # the content of alice's server insight

    def user_key(self, name: str) -> str:
        return f"server:{GUILD}:user:{self.ids[name]}"


def make_store(folder: Path) -> Store:
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "zos.db"
    db = database.connect(db_path, create=True)
    migrations.apply(db, db_path)
    try:
        world = build_world(
            db, folder, users=4, messages_each=3, gated=("dave",), dm_with="bob",
            dm_texts=(f"{DM_CANARY} my glaze recipe is a secret", "noted"),
            texts={"carol": BARE_URL})
        gated = Config.model_validate({"discord": {"self_user_id": SELF_ID},
                                       "servers": {GUILD: {"privacy_gate_role": GATE_ROLE}}})
        for layer, topic in [("user", world.user_key(n)) for n in ("alice", "bob", "carol")] + [
                ("user", world.global_key("bob")), ("channel", f"server:{GUILD}:channel:2001"),
                ("channel", f"server:{GUILD}:channel:2002")]:
            summary = run_layer(db, gated, RunOptions(layer=layer, topic=topic))
            assert summary["status"] == "completed", summary
        dm_insight = db.execute("SELECT content FROM insights WHERE sources_scope_max = 'dm'"
                                ).fetchone()[0]
        public_insight = db.execute(
            "SELECT content FROM insights WHERE topic_key = ?",
            [f"server:{GUILD}:user:{world.ids['alice']}"]).fetchone()[0]
    finally:
        db.close()
    config_path = folder / "zos.toml"
    config_path.write_text(f'[discord]\nself_user_id = "{SELF_ID}"\n\n'
                           f'[servers."{GUILD}"]\nprivacy_gate_role = "{GATE_ROLE}"\n')
    return Store(db_path, config_path, dict(world.ids), dm_insight, public_insight)


class BrowseServer:
    """`zos --db … --config … browse --port 0 [args]` in a subprocess, on 127.0.0.1; `url`
    is what it printed. Stopped with `stop` (SIGINT: as Ctrl-C) when the block ends."""

    def __init__(self, store: Store, *args: str, env: dict | None = None,
                 timeout: float = 60, stop: int = signal.SIGINT) -> None:
        self.command = [sys.executable, "-m", "zos_cli", "--db", str(store.db_path),
                        "--config", str(store.config_path), "browse", "--port", "0", *args]
        self.env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
        self.timeout = timeout
        self.stop = stop
        self.returncode: int | None = None
        self.url = ""
        self.stderr = ""

    def __enter__(self) -> "BrowseServer":
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(self.timeout)
        if not line or not line[0].startswith("http://127.0.0.1:"):
            self.proc.kill()
            raise AssertionError(f"zos browse did not start: {line} {self.proc.stderr.read()}")
        self.url = line[0].strip()
        self.client = httpx.Client(timeout=30)  # (one client: a new one per request is slow)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.proc.send_signal(self.stop)
        try:
            _out, self.stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.returncode = self.proc.returncode
