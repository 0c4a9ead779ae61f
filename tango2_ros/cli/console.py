"""`tango2 console`: the operator console in a browser, and its accounts.

    tango2 console [--address A] [--port P] [--namespace NS] [--name N] [--pacs-dicomweb URL] [--duration S]
    tango2 console adduser NAME --role viewer|operator|radiologist|admin --password-stdin [--language ko]
    tango2 console users [--json]

The console keeps its accounts, audit log and corrections log in $TANGO2_CONSOLE_HOME (default
~/.tango2/console). A password is read from standard input only, never from the command line (where `ps` and
the shell's history would show it).
"""
from __future__ import annotations

import sys
from pathlib import Path

from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("console", help="the operator console in a browser, and its accounts",
                                 description=__doc__)
    parser.add_argument("--address", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--namespace", default="/tango2", help="the stack's namespace (default /tango2)")
    parser.add_argument("--name", default="console", help="the node's name (default console; another name for a "
                        "second console beside a profile's)")
    parser.add_argument("--pacs-dicomweb", default="", metavar="URL", help="DICOMweb root of the PACS with drafts")
    parser.add_argument("--pacs-rest", default="", metavar="URL", help="Orthanc's REST root (signed drafts deleted)")
    parser.add_argument("--fhir-dir", default="", metavar="DIR", help="ct_report's FHIR folder (made final)")
    parser.add_argument("--study-salt", default="tango2", help="ct_report's study key salt")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    parser.set_defaults(handler=serve)
    accounts = parser.add_subparsers(dest="action", metavar="ACTION")
    add = accounts.add_parser("adduser", help="add an account (the password from standard input)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("viewer", "operator", "radiologist", "admin"))
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from standard input (the only way: never on the command line)")
    add.add_argument("--language", default="en", choices=("en", "ko"), help="the account's language (default en)")
    add.add_argument("--display-name", default="", help="the name a signed report carries, e.g. 'Dr. Kim Minji'")
    add.add_argument("--replace", action="store_true", help="set a new password, role or language")
    add.set_defaults(handler=add_user)
    users = accounts.add_parser("users", help="list the accounts and their roles")
    users.add_argument("--json", action="store_true")
    users.set_defaults(handler=list_users)


def _store():
    from tango2_ros.console.accounts import AccountStore, console_home

    return AccountStore(console_home())


def add_user(args) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    account = _store().add(args.name, args.role, password, args.language, args.display_name, args.replace)
    print(f"account {account.name} ({account.role}, {account.language}) saved in {_store().path}")
    return 0


def list_users(args) -> int:
    names = _store().names()
    emit(args, {"accounts": names}, "\n".join(f"{n:<24} {r}" for n, r in sorted(names.items())) or "(no accounts)")
    return 0


def serve(args) -> int:
    from tango2_ros.bringup.profiles import NodeSpec, Profile
    from tango2_ros.cli.launch import run_profile

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: use 0 to 65535")
    if not _store().names():
        print("no console account yet: add one with `tango2 console adduser NAME --role admin --password-stdin`",
              file=sys.stderr)
    namespace = args.namespace.rstrip("/") or "/"
    parameters = {"address": args.address, "port": args.port, "model_manager": f"{namespace.rstrip('/')}/models",
                  "ask_action": f"{namespace.rstrip('/')}/sds/ask", "pacs_dicomweb": args.pacs_dicomweb,
                  "pacs_rest": args.pacs_rest, "fhir_dir": args.fhir_dir, "study_salt": args.study_salt}
    node = NodeSpec(args.name, "console", namespace=namespace, parameters=parameters)
    return run_profile(Profile("console", "the operator console", (node,), Path("<tango2 console>")), args.duration)
