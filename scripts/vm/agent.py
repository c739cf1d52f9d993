"""An agent in the VM suite: grpcio, stubs generated in the guest from proto/.

Usage: agent.py SOCKET tools
       agent.py SOCKET invoke TOOL ARGS_JSON
Prints the answer (or `rpc-error CODE details`) and exits 0 when the RPC
succeeded, 3 when it did not.
"""

import os
import sys

import grpc

from tark.plugin.v1 import plugin_pb2 as pb
from tark.plugin.v1 import plugin_pb2_grpc as rpc


def main(socket, verb, *args):
    timeout = float(os.environ.get("AGENT_TIMEOUT", "30"))
    tools = rpc.ToolsStub(grpc.insecure_channel(f"unix:{socket}"))
    try:
        if verb == "tools":
            listed = tools.ListTools(pb.ListToolsRequest(), timeout=timeout)
            print(" ".join(sorted(t.name for t in listed.tools)))
        elif verb == "invoke":
            tool, arguments = args
            got = tools.InvokeTool(
                pb.InvokeToolRequest(tool=tool, arguments_json=arguments), timeout=timeout
            )
            kind = got.WhichOneof("result")
            print(f"{kind}: {getattr(got, kind) if kind else ''}")
        else:
            raise SystemExit(f"unknown verb {verb}")
    except grpc.RpcError as err:
        print(f"rpc-error {err.code().name} {err.details()}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
