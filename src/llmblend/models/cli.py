"""`llmblend convert-model`: a GGUF model -> a safetensors directory (a one-time, DVC-tracked stage)."""


def register(sub, add_common):
    p = sub.add_parser("convert-model", help="convert a GGUF model spec into a safetensors directory")
    add_common(p)
    p.add_argument("--spec", required=True, help="gguf:<file> or package:<module>/<file>.gguf")
    p.add_argument("--out", required=True, help="output model directory")
    p.set_defaults(func=run)

    p = sub.add_parser("convert-ct2", help="convert a model directory into a CTranslate2 directory (ctranslate2 backend)")
    add_common(p)
    p.add_argument("--model", required=True, help="model spec of a safetensors directory (e.g. dir:data/<run>/models/x)")
    p.add_argument("--quantization", default="int8", help="int8 | int8_float32 | float32")
    p.add_argument("--out", required=True, help="output CTranslate2 model directory")
    p.set_defaults(func=run_ct2)


def run_ct2(args):
    from llmblend.models.ct2_convert import convert_ct2

    convert_ct2(args.model, args.out, args.quantization)


def run(args):
    from llmblend.models.convert import convert_gguf

    convert_gguf(args.spec, args.out)
