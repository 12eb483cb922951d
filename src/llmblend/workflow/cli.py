"""`llmblend export-dvc`: write (or check) dvc.yaml from the Snakefile for every profile."""

from pathlib import Path

from llmblend.errors import LLMBlendError


def register(sub, add_common):
    p = sub.add_parser("export-dvc", help="generate dvc.yaml (and dvc/<run>/dvc.yaml) from the Snakefile")
    p.add_argument("--config", action="append", metavar="YAML",
                   help="one profile's config files (default: the default profile and every config/*.yaml)")
    p.add_argument("--check", action="store_true", help="fail if a committed dvc.yaml differs from the generated one")
    p.set_defaults(func=run)

    e = sub.add_parser("export-env", help="write workflow/envs/llmblend.yaml (the conda env) from requirements.lock")
    e.add_argument("--check", action="store_true", help="fail if the committed env file differs from the lock")
    e.set_defaults(func=run_export_env)

    m = sub.add_parser("prefetch-models", help="download every hf: model of a profile into HF_HOME once, for "
                                               "cluster nodes without hub access")
    add_common(m)
    m.add_argument("--list", action="store_true", help="only print the models")
    m.set_defaults(func=run_prefetch)

    c = sub.add_parser("plan-cost", help="print a profile's planned GPU-hours per stage, judge calls and USD, disk")
    add_common(c)
    c.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    c.set_defaults(func=run_plan_cost)


def run_export_env(args):
    """`llmblend export-env [--check]`, in the repository root."""
    from llmblend.io import write_text
    from llmblend.workflow.envfile import ENV_FILE, LOCK, render

    text = render(LOCK.read_text(encoding="utf-8"))
    if args.check:
        if not ENV_FILE.exists() or ENV_FILE.read_text(encoding="utf-8") != text:
            raise LLMBlendError(f"{ENV_FILE} is not the one {LOCK} gives: run `llmblend export-env`")
        print(f"{ENV_FILE} matches {LOCK}")
    else:
        write_text(ENV_FILE, text)
        print(f"wrote {ENV_FILE}")


def run_prefetch(args):
    """`llmblend prefetch-models --config params.yaml --config config/paper.yaml [--list]`."""
    from llmblend.config import load_config
    from llmblend.workflow.prefetch import prefetch

    for line in prefetch(load_config(args.config), list_only=args.list):
        print(line, flush=True)


def run_plan_cost(args):
    """`llmblend plan-cost --config params.yaml [--config config/paper.yaml]`."""
    from llmblend.config import DEFAULT_CONFIG, load_config
    from llmblend.io import write_json
    from llmblend.workflow.cost import dag_jobs, format_plan, plan

    files = args.config or [DEFAULT_CONFIG]
    cfg = load_config(files)  # a bad config is refused, naming its file, before Snakemake reads it
    if not Path("Snakefile").is_file():
        raise LLMBlendError("plan-cost prices the jobs of the Snakefile's DAG: run it in the repository root")
    p = plan(cfg, dag_jobs(files))
    print(format_plan(p))
    if args.json:
        write_json(args.json, p.to_dict())


def run(args):
    from llmblend.io import write_text
    from llmblend.workflow.dvcgen import dvc_path, profiles, render

    stale = []
    for files in ([args.config] if args.config else profiles()):
        target = dvc_path(files)
        text = render(files)
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target))
        else:
            write_text(target, text)
            print(f"wrote {target}")
    if stale:
        raise LLMBlendError(f"stale generated file(s): {', '.join(stale)}; run `llmblend export-dvc`")
