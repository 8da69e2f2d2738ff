"""sky/*.yaml pass SkyPilot 0.14.1's own parser and schema, offline, and say what we mean.

SkyPilot lives in its own venv (``make install-sky``: it does not resolve beside transformers
5), so this process never imports ``sky``: one subprocess in that venv loads every YAML the way
``sky launch`` / ``sky jobs launch`` / ``sky serve up`` do on the client, runs the checks that
work without a network (workdir, file mounts, the service spec, the recovery strategy name),
and prints a JSON summary that the tests below assert on. No ``sky`` CLI runs, so no API server
starts; a test checks that nothing from that subprocess is left running.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKY_PYTHON = ROOT / ".venv-sky" / "bin" / "python"
SKY_VERSION = "0.14.1"

PROBE = r"""
import copy, json, sys
import yaml
import sky
from sky import exceptions
from sky.jobs import recovery_strategy  # registers FAILOVER / EAGER_NEXT_REGION
from sky.serve import serve_utils
from sky.utils import dag_utils, registry

args = json.loads(sys.argv[1])


def load_dag(path=None, text=None, envs=(), secrets=()):
    # Exactly what `sky launch|jobs launch|serve up FILE --env K=V --secret K=V` call.
    envs, secrets = [tuple(kv) for kv in envs], [tuple(kv) for kv in secrets]
    if text is not None:
        return dag_utils.load_chain_dag_from_yaml_str(text, envs, secrets)
    return dag_utils.load_chain_dag_from_yaml(path, envs, secrets)


def load(path=None, text=None, envs=()):
    return load_dag(path, text, envs).tasks[0]


def summary(task):
    task.expand_and_validate_workdir()
    task.expand_and_validate_file_mounts()
    out = {
        "name": task.name,
        "num_nodes": task.num_nodes,
        "workdir": task.workdir,
        "setup": task.setup,
        "run": task.run,
        "envs": dict(task.envs),
        "secrets": sorted(task.secrets),
        "file_mounts": task.file_mounts or {},
        "storage_mounts": {
            dst: {"name": s.name, "source": s.source, "mode": s.mode.value,
                  "persistent": s.persistent}
            for dst, s in task.storage_mounts.items()
        },
        "resources": sorted(
            ({"accelerators": r.accelerators, "use_spot": r.use_spot,
              "disk_size": r.disk_size, "job_recovery": r.job_recovery, "ports": r.ports}
             for r in task.resources),
            key=json.dumps,
        ),
        "ordered": isinstance(task.resources, list),
    }
    for r in task.resources:
        if r.job_recovery:
            registry.JOBS_RECOVERY_STRATEGY_REGISTRY.from_str(r.job_recovery["strategy"])
    if task.service is not None:
        serve_utils.validate_service_task(task, pool=False)  # what `sky serve up` checks
        s = task.service
        out["service"] = {
            "readiness_path": s.readiness_path,
            "readiness_headers": s.readiness_headers,
            "post_data": s.post_data,
            "initial_delay_seconds": s.initial_delay_seconds,
            "min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
            "target_qps_per_replica": s.target_qps_per_replica,
            "dynamic_ondemand_fallback": s.dynamic_ondemand_fallback,
            "base_ondemand_fallback_replicas": s.base_ondemand_fallback_replicas,
            "ports": s.ports,
        }
    return out


def error_of(fn):
    try:
        fn()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)}
    return None


def mutated(path, edit):
    config = yaml.safe_load(open(path))
    edit(config)
    return yaml.safe_dump(config)


result = {"version": sky.__version__, "tasks": {}, "roundtrip_equal": {}, "errors": {}}
for key, spec in args["yamls"].items():
    dag = load_dag(spec["path"], envs=spec["envs"], secrets=spec.get("secrets", ()))
    result["tasks"][key] = summary(dag.tasks[0])
    # What the client sends the API server: the task dumped to YAML, parsed there again.
    again = dag_utils.load_chain_dag_from_yaml_str(dag_utils.dump_chain_dag_to_yaml_str(dag))
    result["roundtrip_equal"][key] = summary(again.tasks[0]) == result["tasks"][key]

train, serve = args["yamls"]["train"], args["yamls"]["serve"]
result["errors"]["unknown_top_level_key"] = error_of(lambda: load(
    text=mutated(train["path"], lambda c: c.update(setpu="echo")), envs=train["envs"]))
result["errors"]["unknown_resources_key"] = error_of(lambda: load(
    text=mutated(train["path"], lambda c: c["resources"]["any_of"][0].update(acelerators="A100:8")),
    envs=train["envs"]))
result["errors"]["unknown_recovery_strategy"] = error_of(
    lambda: registry.JOBS_RECOVERY_STRATEGY_REGISTRY.from_str("FAILOVR"))
result["errors"]["unknown_probe_key"] = error_of(lambda: load(
    text=mutated(serve["path"], lambda c: c["service"]["readiness_probe"].update(initial_delay=9)),
    envs=serve["envs"]))
result["errors"]["missing_ckpt_bucket"] = error_of(lambda: load(
    train["path"], envs=[kv for kv in train["envs"] if kv[0] != "CKPT_BUCKET"]))
print("SKY-SUMMARY " + json.dumps(result, default=str))
"""


def _processes_with_home(home: Path) -> list[str]:
    """Command lines of live processes whose environment has HOME=home (an API server would)."""
    needle = f"HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def sky_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not SKY_PYTHON.exists():
        pytest.skip(f"no SkyPilot venv at {SKY_PYTHON}: run `make install-sky`")
    home = tmp_path_factory.mktemp("sky-home")
    data = tmp_path_factory.mktemp("sky-data")
    args = {
        "yamls": {
            "train": {
                "path": "sky/train.yaml",
                "envs": [["CKPT_BUCKET", "my-ckpts"], ["DATA_SOURCE", str(data)]],
            },
            "serve": {
                "path": "sky/serve.yaml",
                "envs": [["CKPT_BUCKET", "my-ckpts"]],
                "secrets": [["API_KEY", "sk-test"]],
            },
        }
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
        "SKYPILOT_DEBUG": "0",
    }
    proc = subprocess.run(
        [str(SKY_PYTHON), "-c", PROBE, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("SKY-SUMMARY "))
    result = json.loads(line.removeprefix("SKY-SUMMARY "))
    result["leftover_processes"] = _processes_with_home(home)
    result["data_dir"] = str(data)
    return result


def test_probe_ran_the_pinned_skypilot_and_left_nothing_running(sky_result: dict) -> None:
    assert sky_result["version"] == SKY_VERSION
    assert sky_result["leftover_processes"] == []


def test_train_asks_for_8_spot_a100s_with_the_80gb_card_as_an_option(sky_result: dict) -> None:
    train = sky_result["tasks"]["train"]
    accelerators = sorted(json.dumps(r["accelerators"]) for r in train["resources"])
    assert accelerators == ['{"A100": 8}', '{"A100-80GB": 8}']
    assert train["ordered"] is False  # any_of: the cheapest available of the two wins
    assert all(r["use_spot"] for r in train["resources"])
    assert all(r["disk_size"] >= 512 for r in train["resources"])  # 13B + optimizer state
    assert train["num_nodes"] == 1
    assert train["workdir"] == str(ROOT)


def test_train_recovers_from_preemptions_and_errors_as_a_managed_job(sky_result: dict) -> None:
    recovery = [r["job_recovery"] for r in sky_result["tasks"]["train"]["resources"]]
    assert recovery == [{"strategy": "FAILOVER", "max_restarts_on_errors": 3}] * 2
    assert "FAILOVR" in sky_result["errors"]["unknown_recovery_strategy"]["message"]


def test_train_checkpoints_go_to_a_mounted_bucket_named_by_an_env_var(sky_result: dict) -> None:
    train = sky_result["tasks"]["train"]
    assert train["storage_mounts"] == {
        "/checkpoints": {"name": "my-ckpts", "source": None, "mode": "MOUNT", "persistent": True}
    }
    assert train["envs"]["OUTPUT_DIR"].startswith("/checkpoints/")
    assert train["file_mounts"] == {"/data": sky_result["data_dir"]}
    assert train["envs"]["DATA_PATH"].startswith("/data/")


def test_train_envs_carry_vicunas_hyperparameters(sky_result: dict) -> None:
    envs = sky_result["tasks"]["train"]["envs"]
    assert {"MODEL_PATH", "DATA_PATH", "OUTPUT_DIR", "CKPT_BUCKET"} <= set(envs)
    expected = {
        "LEARNING_RATE": "2e-5",
        "NUM_EPOCHS": "3",
        "MAX_LENGTH": "2048",
        "WARMUP_RATIO": "0.03",
        "LR_SCHEDULER": "cosine",
        "GLOBAL_BATCH_SIZE": "128",
    }
    assert {k: envs[k] for k in expected} == expected
    assert sky_result["tasks"]["train"]["secrets"] == ["HF_TOKEN"]


def test_train_sets_up_with_the_flash_extra_and_runs_the_launch_script(sky_result: dict) -> None:
    # What these scripts do is tested by running them: tests/test_sky_launch_scripts.py.
    train = sky_result["tasks"]["train"]
    assert train["setup"] == "bash sky/setup_node.sh train,flash"
    assert train["run"] == "bash sky/launch_train.sh"


def test_serve_is_ready_only_once_the_model_answers(sky_result: dict) -> None:
    serve = sky_result["tasks"]["serve"]
    service = serve["service"]
    # serve local opens the API port only once the model is registered (tests/test_serve_local*).
    assert service["readiness_path"] == "/v1/models"
    assert service["post_data"] is None
    assert service["readiness_headers"] == {"Authorization": "Bearer sk-test"}  # --secret API_KEY
    assert service["initial_delay_seconds"] >= 600  # setup + copying + loading weights
    assert (service["min_replicas"], service["max_replicas"]) == (1, 4)
    assert service["target_qps_per_replica"] > 0
    assert service["dynamic_ondemand_fallback"] is True
    assert service["ports"] == "8000"
    assert all(r["use_spot"] and r["ports"] == ["8000"] for r in serve["resources"])
    assert all(r["job_recovery"] is None for r in serve["resources"])  # SkyServe refuses it
    assert serve["storage_mounts"]["/checkpoints"]["mode"] == "MOUNT"
    assert serve["storage_mounts"]["/checkpoints"]["name"] == "my-ckpts"
    assert serve["secrets"] == ["API_KEY"]
    assert serve["run"] == "bash sky/launch_serve.sh"
    assert serve["setup"] == "bash sky/setup_node.sh serve"


def test_yamls_survive_the_round_trip_to_the_api_server(sky_result: dict) -> None:
    assert sky_result["roundtrip_equal"] == {"train": True, "serve": True}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_top_level_key", "did you mean 'setup'"),
        ("unknown_resources_key", "did you mean 'accelerators'"),
        ("unknown_probe_key", "'initial_delay' was unexpected"),
    ],
)
def test_a_misspelt_key_fails_the_schema_check(sky_result: dict, case: str, expected: str) -> None:
    error = sky_result["errors"][case]
    assert error["type"] == "InvalidSkyPilotConfigError"
    assert expected in error["message"]


def test_launching_without_a_checkpoint_bucket_names_the_missing_env(sky_result: dict) -> None:
    error = sky_result["errors"]["missing_ckpt_bucket"]
    assert error["type"] == "ValueError" and "'CKPT_BUCKET' is None" in error["message"]
