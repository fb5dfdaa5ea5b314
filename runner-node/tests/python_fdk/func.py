# A tiny function on Fn's Python FDK (unchanged, from PyPI): echoes the body with a greeting,
# sets a custom header and reports the call id the FDK saw.
import io
import json

from fdk import response


def handler(ctx, data: io.BytesIO = None):
    body = data.getvalue().decode("utf-8") if data is not None else ""
    return response.Response(
        ctx,
        response_data=json.dumps({"hello": body, "call_id": ctx.CallID()}),
        headers={"Content-Type": "application/json", "X-Python-Fdk": "yes"},
    )
