"""``lsi bag reindex PATH``: recover a bag whose recorder was killed (as ``ros2 bag reindex``)."""

import sys

from lsi_ros.recording import BagError, reindex


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bag",
        help="recover a bag left unfinished by a recorder that was killed",
        description="reindex: rebuild the index and footer of the MCAP file the recorder had open, "
        "from the records on disk, and add it to metadata.yaml. A complete bag is left as it is.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    reindex_parser = actions.add_parser("reindex", help="recover an unfinished bag folder in place")
    reindex_parser.add_argument("path", help="the bag folder (holds metadata.yaml)")
    parser.set_defaults(func=main)


def main(args) -> int:
    try:
        recovered = reindex(args.path)
    except (BagError, OSError) as error:
        print(f"lsi bag reindex: {error}", file=sys.stderr)
        return 1
    if not recovered:
        print(f"{args.path}: complete, nothing to reindex")
    for name, count in recovered.items():
        print(f"{args.path}/{name}: {count} messages recovered")
    return 0
