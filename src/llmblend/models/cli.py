"""`llmblend convert-model`: a GGUF model -> a safetensors directory (a one-time, DVC-tracked stage)."""


def register(sub, add_common):
    p = sub.add_parser("convert-model", help="convert a GGUF model spec into a safetensors directory")
    add_common(p)
    p.add_argument("--spec", required=True, help="gguf:<file> or package:<module>/<file>.gguf")
    p.add_argument("--out", required=True, help="output model directory")
    p.set_defaults(func=run)


def run(args):
    from llmblend.models.convert import convert_gguf

    convert_gguf(args.spec, args.out)
