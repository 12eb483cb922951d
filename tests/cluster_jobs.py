"""What a cluster would receive, built without one (tests/test_scale_out.py runs this as a script):

    python tests/cluster_jobs.py slurm|kubernetes OUT.json -- <snakemake arguments>

Runs the `snakemake` command line in this process with --dry-run added (the profile, --configfile and
every other argument parsed by Snakemake's own CLI code), keeps the jobs the dry run plans, then asks
the executor plugin what it would submit for each job that is not a local rule:
- slurm: the sbatch command line from snakemake-executor-plugin-slurm's own code (get_submit_command,
  set_gres_string, and its Executor's account and partition arguments) at attempts 1, 2 and 3;
- kubernetes: the V1Job body and the Secret from snakemake-executor-plugin-kubernetes's Executor
  (run_job and register_secret, with the Kubernetes API client mocked), with the job's shell command.
Writes a JSON list, one entry per job.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from types import SimpleNamespace
from unittest import mock

ATTEMPTS = (1, 2, 3)


def _resources(job) -> dict:
    return {k: (v if isinstance(v, (int, float)) else str(v)) for k, v in dict(job.resources).items()}


def _slurm(jobs, settings) -> list[dict]:
    import snakemake_executor_plugin_slurm as plugin
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    # the plugin's Executor methods on a stand-in of its state (no partition file, nothing guessed yet);
    # sacctmgr and sinfo are not here: an account is taken as valid, none is guessed, and a job without
    # a partition gets none (sbatch would send it to the cluster's default partition)
    state = SimpleNamespace(_partitions=None, _fallback_partition=None, _fallback_account_arg=None,
                            logger=logging.getLogger("slurm"))
    out = []
    with mock.patch.object(plugin, "validate_account", lambda account, logger: account), \
            mock.patch.object(plugin, "get_account", lambda logger: None), \
            mock.patch.object(plugin, "get_default_partition", lambda job, logger: ""):
        for job in jobs:
            entry = {"rule": job.name, "wildcards": dict(job.wildcards_dict), "sbatch": {}, "resources": {}}
            for attempt in ATTEMPTS:
                job.attempt = attempt  # resources are evaluated again for this attempt
                params = {"run_uuid": "RUN", "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/%j.log",
                          "comment_str": f"rule_{job.name}", "account": next(plugin.Executor.get_account_arg(state, job)),
                          "partition": plugin.Executor.get_partition_arg(state, job), "workdir": "/work"}
                entry["sbatch"][attempt] = get_submit_command(job, params, settings=settings) + set_gres_string(job)
                entry["resources"][attempt] = _resources(job)
            job.attempt = 1
            out.append(entry)
    return out


def _source_archive(workflow) -> list[str]:
    """What a real run uploads for the pods (the workflow's sources), written aside instead of to the
    storage: its file names."""
    import hashlib
    import tarfile
    import tempfile
    from pathlib import Path

    from snakemake.workflow import SourceArchiveInfo

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "sources.tar.xz"
        workflow.write_source_archive(archive)
        checksum = hashlib.sha256(archive.read_bytes()).hexdigest()
        prefix = workflow.storage_settings.default_storage_prefix.rstrip("/")
        workflow._source_archive = SourceArchiveInfo(f"{prefix}/snakemake-workflow-sources.{checksum}.tar.xz", checksum)
        with tarfile.open(archive) as tar:
            return tar.getnames()


def _kubernetes(workflow, jobs) -> list[dict]:
    from snakemake.logging import logger

    sources = _source_archive(workflow)
    with mock.patch("kubernetes.config.load_kube_config"), mock.patch("kubernetes.client.CoreV1Api") as core, \
            mock.patch("kubernetes.client.BatchV1Api") as batch:
        from snakemake_executor_plugin_kubernetes import Executor

        executor = Executor(workflow, logger)
        executor.report_job_submission = lambda info: None  # nothing runs: no status to follow
        secret = core.return_value.create_namespaced_secret.call_args.args[1]
        env = {executor.secret_envvars[k]: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        out = []
        for job in jobs:
            executor.run_job(job)
            body = batch.return_value.create_namespaced_job.call_args.args[1]
            out.append({"rule": job.name, "wildcards": dict(job.wildcards_dict), "shell": job.shellcmd,
                        "resources": _resources(job), "body": body.to_dict(), "secret_env": env,
                        "sources": sources})
        executor.wait = False
    return out


def main(argv: list[str]) -> int:
    mode, out_path, sep, *snakemake_args = argv
    assert mode in ("slurm", "kubernetes") and sep == "--", __doc__
    from snakemake.api import DAGApi
    from snakemake.cli import args_to_api, parse_args
    from snakemake.executors import dryrun
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    planned, result = [], {}
    run_job = dryrun.Executor.run_job

    def keep(self, job):
        planned.append(job)
        return run_job(self, job)

    execute = DAGApi.execute_workflow

    def execute_and_submit(self, *args, **kw):
        execute(self, *args, **kw)
        # the dry run is done; now the executor the profile names, on the same workflow and jobs
        workflow = self.workflow_api._workflow
        plugin = ExecutorPluginRegistry().get_plugin(kw["executor"])
        workflow._executor_plugin, workflow.executor_settings = plugin, kw["executor_settings"]
        jobs = [j for j in planned if not j.is_local]
        result["jobs"] = _slurm(jobs, kw["executor_settings"]) if mode == "slurm" else _kubernetes(workflow, jobs)

    with mock.patch.object(dryrun.Executor, "run_job", keep), \
            mock.patch.object(DAGApi, "execute_workflow", execute_and_submit):
        parser, args = parse_args([*snakemake_args, "--dry-run"])
        ok = args_to_api(args, parser)
    if not ok or "jobs" not in result:
        print("cluster_jobs: the dry run failed", file=sys.stderr)
        return 1
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result["jobs"], f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
