"""``python -m train ...`` == ``fastchat-lite train ...`` (handy under torchrun: ``-m train``)."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from fastchat_lite.errors import FastChatLiteError
    from train.cli import add_parser

    parser = argparse.ArgumentParser(prog="python -m train")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except FastChatLiteError as exc:
        print(f"fastchat-lite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
