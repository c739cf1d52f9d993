"""An agent written in Python, calling tarkd the way any grpcio client would.

Stubs are generated from proto/ by grpc_tools.protoc (the test does it, into a
folder on PYTHONPATH); the channel is grpcio's default for a `unix:` target,
with no options: grpcio sends the socket path, percent-encoded, as :authority.

Usage: agent_client.py SOCKET. Prints one line per check and exits non-zero
on the first that fails.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

from tark.plugin.v1 import plugin_pb2 as pb
from tark.plugin.v1 import plugin_pb2_grpc as rpc


def error_info(err):
    """The google.rpc.ErrorInfo an error carries, or None."""
    status = rpc_status.from_call(err)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def expect_error(what, call, code, reason, **metadata):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, f"{what}: {err.code()} {err.details()}"
        info = error_info(err)
        assert info is not None, f"{what}: no ErrorInfo in {err.details()}"
        assert (info.domain, info.reason) == ("tarkd", reason), f"{what}: {info}"
        for key, value in metadata.items():
            assert info.metadata[key] == value, f"{what}: {info}"
        print(f"ok {what}: {err.code().name} {info.reason} {dict(info.metadata)}")
        return
    raise AssertionError(f"{what}: succeeded")


def main(socket):
    channel = grpc.insecure_channel(f"unix:{socket}")
    plugins = rpc.PluginsStub(channel)
    tools = rpc.ToolsStub(channel)
    system = rpc.SystemStub(channel)

    names = [p.id for p in plugins.ListPlugins(pb.ListPluginsRequest()).plugins]
    assert "notes" in names, names
    print(f"ok list plugins: {names}")

    listed = [t.name for t in tools.ListTools(pb.ListToolsRequest()).tools]
    assert "notes_save" in listed, listed
    print(f"ok list tools: {listed}")

    saved = tools.InvokeTool(
        pb.InvokeToolRequest(
            tool="notes_save", arguments_json='{"title":"py","body":"from grpcio"}'
        )
    )
    got = tools.InvokeTool(
        pb.InvokeToolRequest(tool="notes_get", arguments_json='{"title":"py"}')
    )
    assert saved.plugin == "notes" and "from grpcio" in got.output, (saved, got)
    print(f"ok invoke: {got.output!r}")

    status = system.Status(pb.StatusRequest())
    assert status.version, status
    print(f"ok status: version {status.version}")

    expect_error(
        "unknown plugin",
        lambda: plugins.GetPlugin(pb.PluginRef(id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "PLUGIN_NOT_FOUND",
        plugin="nope",
    )
    expect_error(
        "unknown tool",
        lambda: tools.InvokeTool(pb.InvokeToolRequest(tool="nope", arguments_json="{}")),
        grpc.StatusCode.NOT_FOUND,
        "TOOL_NOT_FOUND",
    )
    expect_error(
        "oversized request",
        lambda: tools.InvokeTool(
            pb.InvokeToolRequest(tool="notes_save", arguments_json="x" * (256 << 10))
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "MESSAGE_TOO_LARGE",
    )

    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "tark.plugin.v1.Tools"]:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, answer
    print("ok health: SERVING")
    channel.close()


if __name__ == "__main__":
    main(sys.argv[1])
