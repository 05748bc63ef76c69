"""`vmn-gateway apikey create|list|revoke`: HTTP API keys in the daemon's database."""

from __future__ import annotations

import argparse
import sys
import time

from gateway.config import Config
from gateway.model import iso
from gateway.storage import apikeys


async def apikey_command(cfg: Config, args: argparse.Namespace) -> int:
    from gateway.cli import _open

    try:
        scopes = apikeys.parse_scopes(args.scope) if args.apikey_command == "create" else None
        if args.apikey_command != "list":
            apikeys.check_name(args.name)
    except apikeys.KeyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = await _open(cfg)
    try:
        if args.apikey_command == "create":
            assert scopes is not None
            known = {n.vmn for n in cfg.numbers} | {n.sender_id for n in cfg.numbers}
            for vmn in args.vmns:
                if vmn not in known:
                    print(f"warning: --vmn {vmn} is not a number of {cfg.source_file}",
                          file=sys.stderr)
            try:
                key = await store.transaction(apikeys.create, name=args.name, scopes=scopes,
                                              vmns=args.vmns, rate=args.rate, now=time.time())
            except apikeys.KeyRefused as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(key)
            print(f"(the key {args.name!r} is shown only now: only its hash is stored)",
                  file=sys.stderr)
            return 0
        if args.apikey_command == "revoke":
            if not await store.transaction(apikeys.revoke, args.name, now=time.time()):
                print(f"error: no live key named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.name}")
            return 0
        rows = await store.transaction(apikeys.list_keys)
        print("NAME\tSCOPES\tVMNS\tRATE\tCREATED\tREVOKED")
        for r in rows:
            k = r.key
            print("\t".join([k.name, ",".join(s for s in apikeys.SCOPES if s in k.scopes),
                             ",".join(k.vmns) or "*",
                             f"{k.rate:g}/s" if k.rate is not None else "-",
                             iso(r.created_at) or "-", iso(r.revoked_at) or "-"]))
        return 0
    finally:
        await store.close()
        await store.engine.dispose()
