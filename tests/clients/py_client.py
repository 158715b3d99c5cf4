#!/usr/bin/env python3
"""Drives pod_exec_mcp with the official Python MCP SDK's LOW-LEVEL client.

Usage: py_client.py URL
       py_client.py --stateless URL   (mcp 2.x only: the high-level Client)
       py_client.py --big-output URL  (outputs costly to encode: NULs, 1 GiB)

Works with whichever `mcp` is installed in the running interpreter:
  1.x: mcp.client.streamable_http.streamablehttp_client + ClientSession
  2.x: mcp.client.streamable_http.streamable_http_client + ClientSession
Both do the `initialize` handshake, so the server sees an MCP session (and
gives it one container). On success prints ONE JSON line to stdout:
  {"ok": true, "mcp_version": ..., "hostname": ..., ...}
On any failure prints a message to stderr and exits non-zero.

Besides the tool's behaviour it records what the SDK itself does: the
protocol version it negotiates, the HTTP requests it makes (so whether it
ends the session with DELETE), whether it validates structuredContent
against the tool's outputSchema, and how it surfaces an isError result that
has no structuredContent.

With MCP_BEARER_TOKEN in the environment, every request carries
`Authorization: Bearer <token>` the way the SDK documents it (a header on
its HTTP client); the token is never printed.

--handles (2.x Client, stateless): a one-shot call says so; sandbox_create,
passing the handle back, sandbox_list, sandbox_destroy; a destroyed, a
made-up and (PY_CLIENT_TTL_WAIT=seconds) an expired handle get one error.
With PY_CLIENT_PAUSE_WITH_HANDLE=FILE it prints {"handle_ready": true} after
the first handle calls and waits for FILE (the test restarts the server).
--stdio-auto / --stdio-legacy CMD...: launch the server over stdio (2.x
Client in mode auto, which probes server/discover first, or legacy; 1.x:
stdio_client + ClientSession).
--sse URL: the legacy HTTP+SSE transport (1.x sse_client + ClientSession).

--stateless uses the 2.x high-level `mcp.client.client.Client` in its default
mode ("auto": probe server/discover, fall back to the handshake). Against a
2026-07-28 server it is stateless: no session, so every call may land in a
container of its own. It reports the negotiated version and the hostname
each call saw, and asserts only what must hold either way.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import warnings
from typing import Any

import anyio

MCP_VERSION = importlib.metadata.version("mcp")
MAJOR = int(MCP_VERSION.split(".")[0])

from mcp import ClientSession  # noqa: E402
from mcp.client import streamable_http  # noqa: E402

TOOL = "shell_exec"
OVERALL_TIMEOUT_S = 50


class Failure(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


def dump(model: Any) -> dict[str, Any]:
    """A pydantic result as the wire JSON (camelCase), in 1.x and 2.x alike."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


class HttpLog:
    """Every HTTP exchange the SDK makes: method, status, protocol header."""

    def __init__(self) -> None:
        self.exchanges: list[str] = []
        self.protocol_headers: set[str] = set()

    async def on_response(self, response: Any) -> None:
        req = response.request
        pv = req.headers.get("mcp-protocol-version")
        if pv:
            self.protocol_headers.add(pv)
        self.exchanges.append(f"{req.method} {response.status_code}")

    def hook(self, client: Any) -> Any:
        client.event_hooks["response"].append(self.on_response)
        return client


def auth_headers() -> dict[str, str] | None:
    token = os.environ.get("MCP_BEARER_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else None


def transport(url: str, log: HttpLog) -> Any:
    """The SDK's low-level streamable HTTP client context manager."""
    if MAJOR >= 2:
        from mcp.shared._httpx_utils import create_mcp_http_client

        return streamable_http.streamable_http_client(
            url, http_client=log.hook(create_mcp_http_client(headers=auth_headers()))
        )
    from mcp.shared._httpx_utils import create_mcp_http_client

    def factory(headers=None, timeout=None, auth=None):  # type: ignore[no-untyped-def]
        return log.hook(create_mcp_http_client(headers=headers, timeout=timeout, auth=auth))

    with warnings.catch_warnings():
        # 1.30 marks streamablehttp_client deprecated (in favour of the 2.x
        # spelling it also has); it is still the 1.x API most code uses.
        warnings.simplefilter("ignore", DeprecationWarning)
        return streamable_http.streamablehttp_client(
            url, headers=auth_headers(), httpx_client_factory=factory
        )


async def call(session: ClientSession, command: str) -> dict[str, Any]:
    result = await session.call_tool(TOOL, {"command": command})
    return dump(result)


async def call_ok(session: ClientSession, command: str) -> dict[str, Any]:
    """Calls shell_exec, checks the result's shape, returns structuredContent."""
    r = await call(session, command)
    check(not r.get("isError", False), f"{command!r}: isError result: {r}")
    sc = r.get("structuredContent")
    check(isinstance(sc, dict), f"{command!r}: no structuredContent: {r}")
    check(isinstance(sc.get("output"), str), f"{command!r}: output not a string: {sc}")
    check(isinstance(sc.get("retval"), int), f"{command!r}: retval not an integer: {sc}")
    texts = [c.get("text") for c in r.get("content", []) if c.get("type") == "text"]
    check(
        any(t and json.loads(t) == sc for t in texts),
        f"{command!r}: no text content carrying the same JSON: {r}",
    )
    return sc


async def probe_output_validation(session: ClientSession) -> Any:
    """Whether the SDK validates structuredContent against outputSchema.

    Read from the SDK source (1.x `_validate_tool_result`, 2.x
    `validate_tool_result`: both run only when isError is false). Proven here
    by making the client's cached copy of the schema demand a field the
    server never sends: a validating client must then reject a good result.
    Uses the SDK's private caches; returns "unknown" if they are not there.
    """
    schemas = getattr(session, "_tool_output_schemas", None)
    if not isinstance(schemas, dict) or TOOL not in schemas:
        return "unknown"
    original = schemas[TOOL]
    validators = getattr(session, "_tool_output_validators", None)
    try:
        strict = json.loads(json.dumps(original))
        strict.setdefault("required", []).append("field_the_server_never_sends")
        schemas[TOOL] = strict
        if isinstance(validators, dict):
            validators.pop(TOOL, None)
        try:
            await session.call_tool(TOOL, {"command": "true"})
        except RuntimeError as e:
            return {"validates": True, "error": str(e)[:200]}
        return {"validates": False}
    finally:
        schemas[TOOL] = original
        if isinstance(validators, dict):
            validators.pop(TOOL, None)


# The run's HTTP log, printed on failure too (e.g. to show a 401).
HTTP_LOG = HttpLog()


async def run(url: str) -> dict[str, Any]:
    log = HTTP_LOG
    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION}
    t0 = time.monotonic()
    async with transport(url, log) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = dump(await session.initialize())
            summary["protocol_version"] = init.get("protocolVersion")
            summary["server_info"] = init.get("serverInfo")

            tools = dump(await session.list_tools())["tools"]
            tool = next((t for t in tools if t.get("name") == TOOL), None)
            check(tool is not None, f"{TOOL} not listed: {[t.get('name') for t in tools]}")
            schema = tool.get("outputSchema")
            check(isinstance(schema, dict), f"{TOOL} has no outputSchema: {tool}")
            check(
                {"output", "retval"} <= set(schema.get("required", [])),
                f"outputSchema does not require output and retval: {schema}",
            )

            sc = await call_ok(session, "echo a; echo b >&2; echo c")
            check(sc["output"] == "a\nb\nc\n", f"merged output: {sc['output']!r}")
            check(sc["retval"] == 0, f"retval: {sc['retval']}")

            sc = await call_ok(session, "exit 3")
            check(sc["retval"] == 3, f"exit 3 gave retval {sc['retval']}")

            h1 = (await call_ok(session, "hostname"))["output"].strip()
            h2 = (await call_ok(session, "hostname"))["output"].strip()
            check(h1 != "" and h1 == h2, f"hostname changed within a session: {h1!r} then {h2!r}")
            summary["hostname"] = h1

            await call_ok(session, "echo persisted-by-py-client > py_client.txt")
            sc = await call_ok(session, "cat py_client.txt")
            check(
                sc["output"] == "persisted-by-py-client\n" and sc["retval"] == 0,
                f"file written in one call not read back in the next: {sc}",
            )

            # isError: true with text content and no structuredContent.
            try:
                r = await call(session, "")
            except Exception as e:  # noqa: BLE001 - reported precisely
                raise Failure(
                    f"the SDK raised on an isError result without structuredContent: "
                    f"{type(e).__module__}.{type(e).__qualname__}: {e}"
                ) from e
            check(r.get("isError") is True, f"empty command: isError not true: {r}")
            text = " ".join(c.get("text", "") for c in r.get("content", []))
            check("empty" in text, f"empty command: text does not mention 'empty': {r}")
            summary["empty_command"] = {
                "isError": True,
                "structuredContent": r.get("structuredContent"),
                "text": text,
            }

            summary["validates_output_schema"] = await probe_output_validation(session)
            # The session (and its container) must still work after the above.
            h3 = (await call_ok(session, "hostname"))["output"].strip()
            check(h3 == h1, f"hostname changed after the error calls: {h1!r} then {h3!r}")
    summary["seconds"] = round(time.monotonic() - t0, 3)
    summary["http"] = log.exchanges
    summary["protocol_version_headers"] = sorted(log.protocol_headers)
    summary["sent_delete"] = any(x.startswith("DELETE ") for x in log.exchanges)
    summary["ok"] = True
    return summary


async def run_big_output(url: str) -> dict[str, Any]:
    """Outputs that are costly to encode still arrive as normal results."""
    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION}
    async with transport(url, HTTP_LOG) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            for command, total in [
                ("head -c 1000000 /dev/zero", 1000000),
                ("head -c 1G /dev/urandom", 1 << 30),
            ]:
                sc = await call_ok(session, command)
                check(sc.get("truncated") is True, f"{command}: not truncated: {sc.keys()}")
                check(sc.get("total_bytes") == total, f"{command}: total_bytes {sc.get('total_bytes')}")
                check(sc["retval"] == 0, f"{command}: retval {sc['retval']}")
                summary[command] = len(sc["output"])
    summary["ok"] = True
    return summary


async def run_stateless(url: str) -> dict[str, Any]:
    check(MAJOR >= 2, f"--stateless needs mcp 2.x, this is {MCP_VERSION}")
    from mcp.client.client import Client

    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION, "client": "Client(url)"}
    t0 = time.monotonic()
    async with Client(url) as client:
        summary["protocol_version"] = client.protocol_version
        hostnames = []
        for command in ["hostname", "hostname", "echo x > stateless.txt; hostname"]:
            r = dump(await client.call_tool(TOOL, {"command": command}))
            check(not r.get("isError", False), f"{command!r}: isError result: {r}")
            sc = r.get("structuredContent") or {}
            check(sc.get("retval") == 0, f"{command!r}: {r}")
            hostnames.append(sc["output"].strip())
        r = dump(await client.call_tool(TOOL, {"command": "cat stateless.txt"}))
        sc = r.get("structuredContent") or {}
        summary["file_persisted"] = sc.get("output") == "x\n"
        r = dump(await client.call_tool(TOOL, {"command": ""}))
        check(r.get("isError") is True, f"empty command: isError not true: {r}")
    summary["hostnames"] = hostnames
    summary["seconds"] = round(time.monotonic() - t0, 3)
    summary["ok"] = True
    return summary


async def run_handles(url: str) -> dict[str, Any]:
    """2.x high-level Client (stateless on 2026-07-28): state through handles."""
    check(MAJOR >= 2, f"--handles needs mcp 2.x, this is {MCP_VERSION}")
    from mcp.client.client import Client

    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION}
    async with Client(url) as client:
        summary["protocol_version"] = client.protocol_version
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        summary["tools"] = tools

        async def tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
            return dump(await client.call_tool(name, args))

        def error_of(r: dict[str, Any]) -> str:
            check(r.get("isError") is True, f"expected a tool error: {r}")
            return " ".join(c.get("text", "") for c in r.get("content", []))

        r = await tool(TOOL, {"command": "echo x > f.txt; hostname"})
        sc = r.get("structuredContent") or {}
        check(sc.get("oneshot") is True, f"a call without handle/session is not marked one-shot: {r}")
        check("sandbox_create" in (sc.get("note") or ""), f"one-shot note says nothing of sandbox_create: {sc}")

        r = await tool("sandbox_create", {"name": "py-box"})
        sc = r.get("structuredContent") or {}
        handle = sc.get("sandbox")
        check(isinstance(handle, str) and len(handle) >= 32, f"sandbox_create: {r}")
        check(isinstance(sc.get("ttl_seconds"), int), f"no ttl_seconds: {sc}")
        sc = (await tool(TOOL, {"command": "echo kept > kept.txt; hostname", "sandbox": handle}))["structuredContent"]
        h1 = sc["output"].strip()
        sc = (await tool(TOOL, {"command": "cat kept.txt; hostname", "sandbox": handle}))["structuredContent"]
        check(sc["output"] == f"kept\n{h1}\n", f"the handle did not reach the same sandbox: {sc}")
        check(not sc.get("oneshot"), f"a handle call is marked one-shot: {sc}")
        summary["hostname"] = h1
        listed = (await tool("sandbox_list", {}))["structuredContent"]["sandboxes"]
        check(any(s.get("name") == "py-box" for s in listed), f"sandbox_list does not show it: {listed}")
        summary["listed"] = listed
        if os.environ.get("PY_CLIENT_PAUSE_WITH_HANDLE"):
            # The test restarts the server meanwhile and then creates this
            # file; the handle must still reach the same sandbox.
            flag = os.environ["PY_CLIENT_PAUSE_WITH_HANDLE"]
            print(json.dumps({"handle_ready": True}), flush=True)
            while not os.path.exists(flag):
                await anyio.sleep(0.1)
            sc = (await tool(TOOL, {"command": "cat kept.txt; hostname", "sandbox": handle}))["structuredContent"]
            check(sc["output"] == f"kept\n{h1}\n", f"after the restart: {sc}")
            summary["after_restart"] = True
        r = await tool("sandbox_destroy", {"sandbox": handle})
        check((r.get("structuredContent") or {}).get("destroyed") is True, f"sandbox_destroy: {r}")
        destroyed = error_of(await tool(TOOL, {"command": "true", "sandbox": handle}))
        made_up = error_of(await tool(TOOL, {"command": "true", "sandbox": "sbx_" + "0" * 32}))
        garbage = error_of(await tool(TOOL, {"command": "true", "sandbox": "nonsense"}))
        check(destroyed == made_up == garbage, f"errors differ: {destroyed!r} / {made_up!r} / {garbage!r}")
        check("expired or unknown" in destroyed, f"error does not say expired or unknown: {destroyed!r}")
        summary["error"] = destroyed
        wait = float(os.environ.get("PY_CLIENT_TTL_WAIT", "0"))
        if wait > 0:
            handle2 = (await tool("sandbox_create", {}))["structuredContent"]["sandbox"]
            await tool(TOOL, {"command": "true", "sandbox": handle2})
            await anyio.sleep(wait)
            expired = error_of(await tool(TOOL, {"command": "true", "sandbox": handle2}))
            check(expired == destroyed, f"expired handle error differs: {expired!r}")
            summary["expired_same_error"] = True
        listed = (await tool("sandbox_list", {}))["structuredContent"]["sandboxes"]
        check(listed == [], f"sandbox_list not empty at the end: {listed}")
    summary["ok"] = True
    return summary


async def run_stdio(mode: str, command: list[str]) -> dict[str, Any]:
    """Launches the server over stdio: the 2.x Client (mode auto probes
    server/discover first; legacy does the handshake) or the 1.x
    stdio_client + ClientSession."""
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION, "mode": mode}
    if MAJOR >= 2:
        from mcp.client.client import Client

        async with Client(params, mode=mode) as client:
            summary["protocol_version"] = client.protocol_version

            async def sh(cmd: str, **extra: Any) -> dict[str, Any]:
                r = dump(await client.call_tool(TOOL, {"command": cmd, **extra}))
                check(not r.get("isError"), f"{cmd!r}: {r}")
                return r["structuredContent"]

            h1 = (await sh("echo s > s.txt; hostname"))["output"].strip()
            sc = await sh("cat s.txt; hostname")
            check(sc["output"] == f"s\n{h1}\n", f"stdio calls did not share a sandbox: {sc}")
            handle = dump(await client.call_tool("sandbox_create", {}))["structuredContent"]["sandbox"]
            hb = (await sh("hostname", sandbox=handle))["output"].strip()
            check(hb != h1, "the handle sandbox is the session's")
            summary["hostname"] = h1
            summary["handle_hostname"] = hb
    else:
        from mcp.client.stdio import stdio_client

        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = dump(await session.initialize())
                summary["protocol_version"] = init.get("protocolVersion")
                h1 = (await call_ok(session, "echo s > s.txt; hostname"))["output"].strip()
                sc = await call_ok(session, "cat s.txt; hostname")
                check(sc["output"] == f"s\n{h1}\n", f"stdio calls did not share a sandbox: {sc}")
                summary["hostname"] = h1
    summary["ok"] = True
    return summary


async def run_sse(url: str) -> dict[str, Any]:
    """The legacy HTTP+SSE transport with the SDK's sse_client (1.x)."""
    from mcp.client.sse import sse_client

    summary: dict[str, Any] = {"ok": False, "mcp_version": MCP_VERSION}
    async with sse_client(url, headers=auth_headers()) as (read, write):
        async with ClientSession(read, write) as session:
            init = dump(await session.initialize())
            summary["protocol_version"] = init.get("protocolVersion")
            tools = sorted(t["name"] for t in dump(await session.list_tools())["tools"])
            summary["tools"] = tools
            h1 = (await call_ok(session, "echo e > e.txt; hostname"))["output"].strip()
            sc = await call_ok(session, "cat e.txt; hostname")
            check(sc["output"] == f"e\n{h1}\n", f"SSE calls did not share a sandbox: {sc}")
            summary["hostname"] = h1
    summary["ok"] = True
    return summary


def main() -> int:
    args = sys.argv[1:]
    mode = "session"
    if args[:1] in (["--stateless"], ["--big-output"], ["--handles"], ["--sse"]):
        mode = args[0][2:]
        args = args[1:]
    elif args[:1] in (["--stdio-auto"], ["--stdio-legacy"]):
        # The rest is the server's command line.
        mode = args[0][2:]
        args = [json.dumps(args[1:])]
    if len(args) != 1:
        print(
            "usage: py_client.py [--stateless | --big-output | --handles | --sse] URL\n"
            "       py_client.py --stdio-auto|--stdio-legacy SERVER_COMMAND...",
            file=sys.stderr,
        )
        return 2
    try:
        summary = anyio.run(_with_timeout, args[0], mode)
    except Failure as e:
        print(f"py_client.py (mcp {MCP_VERSION}): FAILED: {e}", file=sys.stderr)
        print(f"http exchanges: {HTTP_LOG.exchanges}", file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: BLE001 - any crash is a failure with its text
        print(
            f"py_client.py (mcp {MCP_VERSION}): CRASHED: "
            f"{type(e).__module__}.{type(e).__qualname__}: {e!r}",
            file=sys.stderr,
        )
        print(f"http exchanges: {HTTP_LOG.exchanges}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


async def _with_timeout(url: str, mode: str) -> dict[str, Any]:
    with anyio.fail_after(OVERALL_TIMEOUT_S):
        if mode.startswith("stdio-"):
            return await run_stdio(mode.removeprefix("stdio-"), json.loads(url))
        runner = {
            "stateless": run_stateless,
            "big-output": run_big_output,
            "handles": run_handles,
            "sse": run_sse,
        }.get(mode, run)
        return await runner(url)


if __name__ == "__main__":
    sys.exit(main())
