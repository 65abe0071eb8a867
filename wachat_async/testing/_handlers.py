"""The API's operations, as ../shared/wachat-api/openapi.yaml describes them.

Instances (create, list, state, QR as JSON, PNG and live page, profile picture, delete, and the
fake's stand-in for the unpublished logout), messages (every send operation) and webhook
management. Each handler checks its input (:mod:`._validation`), asks the sandbox
(:mod:`._state`) and answers in the API's JSON shapes, which live here only.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._state import BAILEYS, OPEN, FakeInstance, FakeWebhook, Sandbox, now_iso, qr_fields
from ._validation import (
    BOOL_FIELDS,
    check_button,
    check_create,
    check_generic,
    check_list,
    check_location,
    check_media,
    check_send,
    check_text,
    check_webhook,
)
from ._web import FRAMEABLE_PAGE_CSP, Refused, error_response, json_object

# A 1x1 baseline JPEG: the profile picture of every connected fake instance.
PROFILE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEAYABgAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwc"
    "KDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QA"
    "tRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0"
    "NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2"
    "t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APn+iiigD//Z"
)

#: The send operations and the check each body gets beyond :func:`check_send`.
_SENDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "/send/text": check_text,
    "/send/media": check_media,
    "/send": check_generic,
    "/send-location": check_location,
    "/send/list": check_list,
    "/send/button": check_button,
}


class ApiHandlers:
    """The routes of the API application, relative to its ``/api/v1`` prefix.

    ``base_url`` gives the server's API base URL (for the URLs the answers carry).
    """

    def __init__(self, sandbox: Sandbox, base_url: Callable[[], str]) -> None:
        self._sandbox = sandbox
        self._base_url = base_url

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/instance/create", self._create)
        router.add_get("/instance/list", self._list)
        router.add_get("/instance/state", self._state)
        router.add_get("/instance/qr", self._qr)
        router.add_get("/instance/qr/image", self._qr_image)
        router.add_get("/instance/qr/live", self._qr_live)
        router.add_get("/instance/profile-picture", self._profile_picture)
        router.add_delete("/instance/delete", self._delete)
        # The real logout path is unpublished; this one exists on the fake only.
        router.add_delete("/instance/logout", self._logout)
        for path, check in _SENDS.items():
            router.add_post(path, self._send_handler(path, check))
        router.add_get("/webhooks", self._list_webhooks)
        router.add_post("/webhooks", self._upsert_webhook)

    def _find(self, request: web.Request) -> FakeInstance:
        name = request.query.get("instanceName")
        if not name:
            raise Refused("instanceName is required")
        return self._sandbox.by_api_name(name)

    # -- instances -----------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        check_create(body)
        inst, qr_error = self._sandbox.create(
            body["instanceName"],
            integration=body.get("integration", BAILEYS),
            number=body.get("number"),
            options={k: body[k] for k in BOOL_FIELDS if k in body},
        )
        if request.query.get("response") == "image":
            if inst.qr_png is None or qr_error:
                return error_response(502, qr_error or "This integration has no QR code")
            return web.Response(
                status=201,
                body=inst.qr_png,
                content_type="image/png",
                headers={
                    "X-Instance-Name": inst.display_name,
                    "X-Api-Instance-Name": inst.api_name,
                },
            )
        has_qr = inst.qr_png is not None and qr_error is None
        return web.json_response(
            {
                "success": True,
                "instance": {
                    "id": inst.id,
                    **_names(inst),
                    "number": inst.number or "",
                    "integration": inst.integration,
                },
                "qrcode": self._qr_json(inst) if has_qr else None,
                "qrError": qr_error,
            },
            status=201,
        )

    def _qr_json(self, inst: FakeInstance) -> dict[str, Any]:
        base = self._base_url()
        return {
            **qr_fields(inst),
            "imageUrl": f"{base}/instance/qr/image?instanceName={inst.api_name}",
            "liveUrl": f"{base}/instance/qr/live?instanceName={inst.api_name}",
        }

    def _profile(self, inst: FakeInstance) -> dict[str, Any]:
        """The fields list and state share: who the linked phone is."""
        connected = inst.state == OPEN
        picture = (
            f"{self._base_url()}/instance/profile-picture?instanceName={inst.api_name}"
            if connected
            else None
        )
        return {
            "state": inst.state,
            "profileName": inst.profile_name or inst.display_name,
            "profilePictureUrl": picture,
            "profilePicUrl": picture,
            "number": inst.number or "",
            "owner": inst.owner or "",
            "integration": inst.integration,
        }

    async def _list(self, request: web.Request) -> web.Response:
        items = []
        for inst in list(self._sandbox.instances.values()):
            self._sandbox.refresh_if_expired(inst)
            items.append(
                {
                    "id": inst.id,
                    **_names(inst),
                    **self._profile(inst),
                    "status": inst.state,
                    "isConnected": inst.state == OPEN,
                    "createdAt": inst.created_at,
                    "updatedAt": inst.updated_at,
                }
            )
        return web.json_response({"success": True, "count": len(items), "instances": items})

    async def _state(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._sandbox.refresh_if_expired(inst)
        names = _names(inst)
        del names["displayName"]
        return web.json_response(
            {
                "success": True,
                "data": {"instance": {"instanceName": inst.api_name, "state": inst.state}},
                "instance": {**names, **self._profile(inst)},
            }
        )

    async def _qr(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._sandbox.freshen_qr(inst)
        return web.json_response({"success": True, "qrcode": self._qr_json(inst)})

    async def _qr_image(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._sandbox.freshen_qr(inst)
        return web.Response(body=inst.qr_png, content_type="image/png")

    async def _qr_live(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        if inst.state == OPEN:
            content = "<h2>WhatsApp connected &#10003;</h2>"
        else:
            self._sandbox.freshen_qr(inst)
            uri = html.escape(inst.qr_data_uri or "")
            content = f'<img src="{uri}" width="264" height="264" alt="QR">'
        page = (
            f'<!doctype html><html><head><meta http-equiv="refresh" content="5"><title>'
            f"{html.escape(inst.display_name)}</title></head><body>{content}</body></html>"
        )
        headers = {"Content-Security-Policy": FRAMEABLE_PAGE_CSP, "Cache-Control": "no-store"}
        return web.Response(text=page, content_type="text/html", headers=headers)

    async def _profile_picture(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        if inst.state != OPEN:
            raise Refused("Instance is not connected: no profile picture", status=404)
        return web.Response(body=PROFILE_JPEG, content_type="image/jpeg")

    async def _delete(self, request: web.Request) -> web.Response:
        inst = self._find(request)
        self._sandbox.delete(inst)
        return web.json_response({"success": True, "message": f"Instance {inst.api_name} deleted"})

    async def _logout(self, request: web.Request) -> web.Response:
        self._sandbox.disconnect(self._find(request))
        return web.json_response({"success": True, "message": "Logged out"})

    # -- messages ------------------------------------------------------------------------------

    def _send_handler(
        self, path: str, check: Callable[[dict[str, Any]], None]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await json_object(request)
            check_send(body)
            check(body)
            inst = self._sandbox.by_api_name(body["instanceName"])
            message_id = self._sandbox.send(inst, path, body)
            return web.json_response(
                {
                    "success": True,
                    "message": "Message queued for dispatch",
                    "data": {"id": message_id, "status": "PENDING"},
                }
            )

        return handle

    # -- webhooks ------------------------------------------------------------------------------

    def _webhook_json(self, hook: FakeWebhook, *, reveal: bool) -> dict[str, Any]:
        inst = self._sandbox.instances.get(hook.instance_name) if hook.instance_name else None
        return {
            "id": hook.id,
            "name": hook.name,
            "url": hook.url,
            "events": hook.events,
            "enabled": hook.enabled,
            "secret": hook.secret if reveal else f"whsec_••••{hook.secret[-6:]}",
            "instance": None if inst is None else _names(inst),
            "createdAt": hook.created_at,
            "updatedAt": hook.updated_at,
        }

    async def _list_webhooks(self, request: web.Request) -> web.Response:
        name = request.query.get("instanceName")
        hooks = [
            self._webhook_json(h, reveal=False)
            for h in self._sandbox.webhooks.values()
            if name is None or h.instance_name == name
        ]
        return web.json_response({"success": True, "count": len(hooks), "webhooks": hooks})

    async def _upsert_webhook(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        check_webhook(body)
        if "instanceName" in body:
            self._sandbox.by_api_name(body["instanceName"])
        if "id" in body:
            hook = self._sandbox.webhooks.get(body["id"])
            if hook is None:
                raise Refused(f"Webhook {body['id']} not found", status=404)
            hook.url = body["url"]
            for key, attr in (
                ("name", "name"),
                ("events", "events"),
                ("enabled", "enabled"),
                ("secret", "secret"),
                ("instanceName", "instance_name"),
            ):
                if key in body:
                    setattr(hook, attr, body[key])
            hook.updated_at = now_iso()
        else:
            hook = self._sandbox.add_webhook(
                body["url"],
                name=body.get("name"),
                events=body.get("events", ["*"]),
                enabled=body.get("enabled", True),
                secret=body.get("secret"),
                instance_name=body.get("instanceName"),
            )
        return web.json_response(
            {"success": True, "webhook": self._webhook_json(hook, reveal=True)}
        )


def _names(inst: FakeInstance) -> dict[str, Any]:
    """The four names the API gives an instance."""
    return {
        "instanceName": inst.display_name,
        "displayName": inst.display_name,
        "apiInstanceName": inst.api_name,
        "internalName": inst.api_name,
    }
