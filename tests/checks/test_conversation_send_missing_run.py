# ruff: noqa: E501  (the case tables hold source lines as long as real code has them)
"""conversation-send-missing-run: sends to an agent-server conversation without ``run: true``.

INVALID cases must fire with the given severity on the line marked ``HERE`` (missing if
not); VALID cases must not fire at all (noisy if they do).
"""

from __future__ import annotations

import pytest

from reviewbot.checks.send_missing_run import CHECK, RULE
from reviewbot.models import Severity
from tests.checks.test_agent_server import (
    from_versions,
    marked_line,
    partly_added,
    review,
    source,
    whole_file,
)

TS = 'import { ConversationClient } from "@openhands/typescript-client";\n'
PY = "from openhands.sdk import Conversation\n"


def ts(code: str) -> str:
    return TS + source(code)


def py(code: str) -> str:
    return PY + source(code)


CRITICAL, SUGGESTION = Severity.CRITICAL, Severity.SUGGESTION

# (files: path → code, severity) — the finding is expected on the line marked HERE.
INVALID: list[object] = [
    # ---- typescript-client sendEvent ----
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, { role: 'user', content }); // HERE"},
        CRITICAL,
        id="sendEvent-no-options",
    ),
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, { role: 'user', content }, {}); // HERE"},
        CRITICAL,
        id="sendEvent-empty-options",
    ),
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, msg, { run: false }); // HERE"},
        CRITICAL,
        id="sendEvent-run-false-options",
    ),
    pytest.param(
        {
            "src/chat.ts": TS
            + "await client.sendEvent(id, { ...m, run: true }, { run: false }); // HERE"
        },
        CRITICAL,
        id="sendEvent-options-override-message-run",
    ),
    pytest.param(
        {
            "src/chat.ts": ts("""
            export async function send(client, id, text) {
              const message = { role: "user", content: [{ type: "text", text }] };
              await client.sendEvent(id, message); // HERE
            }
            """)
        },
        CRITICAL,
        id="sendEvent-variable-without-run",
    ),
    pytest.param(
        {
            "src/chat.ts": ts("""
            export async function send(client: ConversationClient, id: string, message: Message) {
              await client.sendEvent(id, message); // HERE
            }
            """)
        },
        CRITICAL,
        id="sendEvent-parameter-message",
    ),
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, { role: 'user', run: false }); // HERE"},
        CRITICAL,
        id="sendEvent-message-run-false",
    ),
    pytest.param(
        {
            "src/chat.ts": ts("""
            export async function send(client, id, text) {
              const message = { role: "user", content: text, run: true };
              message.run = false;
              await client.sendEvent(id, message); // HERE
            }
            """)
        },
        CRITICAL,
        id="sendEvent-run-reset-to-false",
    ),
    pytest.param(
        {
            "src/chat.ts": ts("""
            await new ConversationClient(options).sendEvent( // HERE
              conversationId,
              { role: "user", content },
            );
            """)
        },
        CRITICAL,
        id="sendEvent-multiline-chained",
    ),
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, msg, { run: true, ...opts }); // HERE"},
        SUGGESTION,
        id="sendEvent-options-run-before-spread",
    ),
    pytest.param(
        {"src/chat.ts": TS + "await client.sendEvent(id, { run: true, ...base }); // HERE"},
        SUGGESTION,
        id="sendEvent-message-run-before-spread",
    ),
    pytest.param(
        {
            "src/chat.js": 'const { ConversationClient } = require("@openhands/typescript-client");\n'
            + "client.sendEvent(id, { role: 'user', content }); // HERE"
        },
        CRITICAL,
        id="sendEvent-javascript-require",
    ),
    pytest.param(
        {
            "src/Composer.tsx": ts("""
            export function Composer({ id }: { id: string }) {
              const onSubmit = async (text: string) => {
                await client.sendEvent(id, { role: "user", content: [{ type: "text", text }] }); // HERE
              };
              return <form onSubmit={() => onSubmit(value)}><input /></form>;
            }
            """)
        },
        CRITICAL,
        id="sendEvent-tsx-component",
    ),
    pytest.param(
        {
            "src/chat.ts": ts("""
            export async function send(client, id, message) {
              const options = {};
              await client.sendEvent(id, message, options); // HERE
            }
            """)
        },
        CRITICAL,
        id="sendEvent-empty-options-variable",
    ),
    # ---- raw HTTP (TS/JS) ----
    pytest.param(
        {
            "src/api.ts": """
            export async function send(baseUrl: string, id: string, text: string) {
              await fetch(`${baseUrl}/api/conversations/${id}/events`, { // HERE
                method: "POST",
                body: JSON.stringify({ role: "user", content: [{ type: "text", text }] }),
              });
            }
            """
        },
        CRITICAL,
        id="fetch-template-url",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export async function send(baseUrl, id, text) {
              const body = { role: "user", content: text };
              await fetch(`${baseUrl}/api/conversations/${id}/events`, { method: "POST", body: JSON.stringify(body) }); // HERE
            }
            """
        },
        CRITICAL,
        id="fetch-body-variable",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export async function send(baseUrl, id, message) {
              const url = `${baseUrl}/api/conversations/${id}/events`;
              return fetch(url, { method: "post", headers, body: JSON.stringify(message) }); // HERE
            }
            """
        },
        CRITICAL,
        id="fetch-url-variable-parameter-body",
    ),
    pytest.param(
        {
            "src/api.js": """
            export function send(baseUrl, id, text) {
              return axios.post(baseUrl + "/api/conversations/" + id + "/events", { role: "user", content: text }); // HERE
            }
            """
        },
        CRITICAL,
        id="axios-concatenated-url",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export const send = (id: string) =>
              api.post(`/api/conversations/${id}/events`, { role: "user", content, run: false }); // HERE
            """
        },
        CRITICAL,
        id="axios-run-false",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export function send(id) {
              return axios({ method: "post", url: `/api/conversations/${id}/events`, data: { role: "user" } }); // HERE
            }
            """
        },
        CRITICAL,
        id="axios-config-object",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export async function nudge(base, id) {
              await fetch(`${base}/api/conversations/${id}/events`, { method: "POST" }); // HERE
            }
            """
        },
        CRITICAL,
        id="fetch-without-body",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export async function send(backend, id, message) {
              await callCloudProxy({ // HERE
                backend,
                method: "POST",
                path: `/api/conversations/${id}/events`,
                body: message,
              });
            }
            """
        },
        CRITICAL,
        id="proxy-helper-config",
    ),
    pytest.param(
        {
            "src/api.mjs": """
            export const send = (id, text) =>
              ky.post(`api/conversations/${id}/events`, { json: { role: "user", content: text } }); // HERE
            """
        },
        CRITICAL,
        id="ky-json-option",
    ),
    pytest.param(
        {
            "src/api.ts": """
            export async function send(base, id, text) {
              const init = { method: "POST", body: JSON.stringify({ role: "user", content: text }) };
              await fetch(`${base}/api/conversations/${id}/events`, init); // HERE
            }
            """
        },
        CRITICAL,
        id="fetch-init-variable",
    ),
    # ---- wrappers ----
    pytest.param(
        {
            "src/api.ts": ts("""
            export function sendText(client, id, text) {
              return client.sendEvent(id, { role: "user", content: [{ type: "text", text }] }); // HERE
            }
            export function onSend(id) { return sendText(client, id, "hi"); }
            """)
        },
        CRITICAL,
        id="wrapper-own-send-is-flagged",
    ),
    pytest.param(
        {
            "src/http.ts": "export function apiPost(path, body) { return http.request('POST', path, body); }\n",
            "src/chat.ts": """
            import { apiPost } from "./http";
            export const send = (id, text) =>
              apiPost(`/api/conversations/${id}/events`, { role: "user", content: text }); // HERE
            """,
        },
        CRITICAL,
        id="wrapper-in-other-file-without-run",
    ),
    pytest.param(
        {
            "src/http.ts": "export function request(path, body) { return fetch(path, { method: 'POST', body }); }\n",
            "src/chat.ts": """
            import { request } from "./http";
            export const send = (id) => request(`/api/conversations/${id}/events`, { role: "user" }); // HERE
            """,
        },
        CRITICAL,
        id="wrapper-named-neutrally-that-posts",
    ),
    # ---- Python ----
    pytest.param(
        {
            "agent/send.py": """
            import httpx

            def send(base, cid, text):
                return httpx.post(f"{base}/api/conversations/{cid}/events", json={"role": "user", "content": text})  # HERE
            """
        },
        CRITICAL,
        id="python-httpx-literal",
    ),
    pytest.param(
        {
            "agent/send.py": """
            async def send(client, base, cid, text):
                payload = {"role": "user", "content": [{"type": "text", "text": text}]}
                await client.post(f"{base}/api/conversations/{cid}/events", json=payload)  # HERE
            """
        },
        CRITICAL,
        id="python-async-client-payload-variable",
    ),
    pytest.param(
        {
            "agent/send.py": """
            import requests

            def send(base, cid, text):
                requests.post(base + "/api/conversations/" + cid + "/events", json={"role": "user", "run": False})  # HERE
            """
        },
        CRITICAL,
        id="python-requests-run-false",
    ),
    pytest.param(
        {
            "agent/send.py": """
            import json

            def send(session, base, cid, message):
                session.post(f"{base}/api/conversations/{cid}/events", data=json.dumps(message))  # HERE
            """
        },
        CRITICAL,
        id="python-data-json-dumps-parameter",
    ),
    pytest.param(
        {
            "agent/send.py": """
            def send(client, cid, text):
                return client.request("POST", f"/api/conversations/{cid}/events", json={"role": "user"})  # HERE
            """
        },
        CRITICAL,
        id="python-request-post",
    ),
    pytest.param(
        {
            "agent/send.py": """
            def send(client, cid):
                payload = {"role": "user"}
                payload["run"] = False
                client.post("/api/conversations/%s/events" % cid, json=payload)  # HERE
            """
        },
        CRITICAL,
        id="python-payload-run-set-false",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            def ask(conversation: Conversation, text: str) -> None:
                conversation.send_message(text)  # HERE
            """)
        },
        CRITICAL,
        id="python-sdk-send-message-without-run",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            def ask(conversation, other, text):
                conversation.run()
                conversation.send_message(text)  # HERE
                other.run()
            """)
        },
        CRITICAL,
        id="python-sdk-run-before-or-on-other-object",
    ),
    # ---- initial_message and WebSocket (suggestions) ----
    pytest.param(
        {
            "src/start.ts": ts("""
            export async function start(client, text) {
              return client.createConversation({
                agent,
                initial_message: { role: "user", content: [{ type: "text", text }] }, // HERE
              });
            }
            """)
        },
        SUGGESTION,
        id="initial-message-literal",
    ),
    pytest.param(
        {
            "src/start.ts": ts("""
            function buildInitialMessage(text) {
              return { role: "user", content: [{ type: "text", text }] };
            }
            export const payload = (text) => ({ initial_message: buildInitialMessage(text) }); // HERE
            """)
        },
        SUGGESTION,
        id="initial-message-builder-same-file",
    ),
    pytest.param(
        {
            "src/messages.ts": "export function buildInitialMessage(text) { return { role: 'user', content: text }; }\n",
            "src/start.ts": """
            import { buildInitialMessage } from "./messages";
            export const payload = { initial_message: buildInitialMessage("hi") }; // HERE
            """,
        },
        SUGGESTION,
        id="initial-message-builder-other-file",
    ),
    pytest.param(
        {
            "src/start.ts": "const payload = { initial_message: { role: 'user', run: false } }; // HERE"
        },
        SUGGESTION,
        id="initial-message-run-false",
    ),
    pytest.param(
        {
            "src/start.ts": ts("""
            export function payload(text) {
              const initial_message = { role: "user", content: text };
              return { agent, initial_message }; // HERE
            }
            """)
        },
        SUGGESTION,
        id="initial-message-shorthand",
    ),
    pytest.param(
        {
            "agent/start.py": """
            def start(client, text):
                body = {"agent": agent, "initial_message": {"role": "user", "content": text}}  # HERE
                return client.post("/api/conversations", json=body)
            """
        },
        SUGGESTION,
        id="initial-message-python-dict",
    ),
    pytest.param(
        {
            "agent/start.py": """
            request = StartConversationRequest(
                agent=agent,
                initial_message=SendMessageRequest(role="user", content=[text]),  # HERE
            )
            """
        },
        SUGGESTION,
        id="initial-message-python-keyword",
    ),
    pytest.param(
        {
            "src/socket.ts": ts("""
            export function connect(wsBase, id) {
              const ws = new WebSocket(`${wsBase}/sockets/events/${id}`);
              ws.onopen = () => ws.send(JSON.stringify({ role: "user", content })); // HERE
            }
            """)
        },
        SUGGESTION,
        id="websocket-literal",
    ),
    pytest.param(
        {
            "src/socket.ts": """
            export class EventsSocket {
              ws = new WebSocket(`${base}/sockets/events/${this.id}`);
              sendMessage(message) {
                this.ws.send(JSON.stringify(message)); // HERE
              }
            }
            """
        },
        SUGGESTION,
        id="websocket-parameter-message",
    ),
    pytest.param(
        {
            "src/useChat.tsx": """
            export function useChat(id) {
              const { sendJsonMessage } = useWebSocket(`${wsUrl}/sockets/events/${id}`);
              return (text) => sendJsonMessage({ role: "user", content: [{ type: "text", text }] }); // HERE
            }
            """
        },
        SUGGESTION,
        id="websocket-react-use-websocket",
    ),
    pytest.param(
        {
            "agent/ws.py": """
            import json, websockets

            async def chat(base, cid, text):
                async with websockets.connect(f"{base}/sockets/events/{cid}") as ws:
                    await ws.send(json.dumps({"role": "user", "content": text}))  # HERE
            """
        },
        SUGGESTION,
        id="websocket-python",
    ),
]


@pytest.mark.parametrize(("files", "severity"), INVALID)
def test_invalid(files: dict[str, str], severity: Severity) -> None:
    changed = [whole_file(path, code) for path, code in files.items()]
    marked = [(path, code) for path, code in files.items() if "HERE" in code]
    assert len(marked) == 1
    path, code = marked[0]
    result = review(CHECK, *changed)
    found = [(f.path, f.line, f.severity) for f in result.findings]
    assert found == [(path, marked_line(code), severity)]
    finding = result.findings[0]
    assert finding.rule == RULE
    assert "run" in finding.message
    assert finding.code


VALID: list[object] = [
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, msg, { run: true });"}, id="options-run-true"
    ),
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, { ...msg, run: true });"},
        id="spread-then-run",
    ),
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, { role, content, run: true });"},
        id="message-run-true",
    ),
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, msg, { run: autoRun });"}, id="run-from-flag"
    ),
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, msg, { ...opts, run: true });"},
        id="options-spread-then-run",
    ),
    pytest.param(
        {"src/a.ts": TS + "await client.sendEvent(id, msg, options);"}, id="options-passed-through"
    ),
    pytest.param(
        {
            "src/a.ts": TS
            + "await client.sendEvent(id, msg, {}, );\n".replace("{}, ", "{ run: true }")
        },
        id="options-run-true-trailing-comma",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function send(client, id, message) {
              const options = { run: true };
              await client.sendEvent(id, message, options);
            }
            """)
        },
        id="options-variable-run-true",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export function payload(text) {
              const initial_message = { role: "user", content: text, run: true };
              return { agent, initial_message };
            }
            """)
        },
        id="initial-message-shorthand-with-run",
    ),
    pytest.param(
        {
            "agent/a.py": py("""
            async def ask(conversation, text):
                conversation.send_message(text)
                await asyncio.to_thread(conversation.run)
            """)
        },
        id="python-sdk-run-in-executor",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function send(client, id, text) {
              const message = { role: "user", content: text, run: true };
              await client.sendEvent(id, message);
            }
            """)
        },
        id="variable-with-run",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function send(client, id, text) {
              const message = { role: "user", content: text };
              message.run = true;
              await client.sendEvent(id, message);
            }
            """)
        },
        id="variable-gets-run-assigned",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function sendEvent(id, event, options = {}) {
              await this.client.post(`/api/conversations/${id}/events`, {
                ...event,
                ...(options.run === undefined ? {} : { run: options.run }),
              });
            }
            """)
        },
        id="client-implementation-decides-run-in-code",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export function sendUserMessage(id: string, text: string) {
              return client.sendEvent(id, { role: "user", content: [{ type: "text", text }] }, { run: true });
            }
            export const onSend = (id: string) => sendUserMessage(id, "hi");
            """)
        },
        id="wrapper-adds-run-same-file",
    ),
    pytest.param(
        {
            "src/service.ts": ts("""
            export class ChatService {
              sendEvent(id, message) { return this.client.sendEvent(id, message, { run: true }); }
            }
            """),
            "src/ui.ts": "export const go = (service, id) => service.sendEvent(id, { role: 'user' });",
        },
        id="wrapper-method-in-other-file",
    ),
    pytest.param(
        {
            "src/http.ts": "export function postEvent(path, body) { return fetch(path, { method: 'POST', body: JSON.stringify({ ...body, run: true }) }); }\n",
            "src/chat.ts": "export const send = (id) => postEvent(`/api/conversations/${id}/events`, { role: 'user' });",
        },
        id="url-wrapper-adds-run-other-file",
    ),
    pytest.param(
        {
            "src/a.ts": "fetch(`${base}/api/conversations/${id}/events`, { method: 'POST', body: JSON.stringify({ ...m, run: true }) });"
        },
        id="fetch-with-run",
    ),
    pytest.param(
        {"src/a.ts": "fetch(`${base}/api/conversations/${id}/events`).then((r) => r.json());"},
        id="fetch-get-events",
    ),
    pytest.param(
        {
            "src/a.ts": "fetch(`${base}/api/conversations/${id}/events/search`, { method: 'POST', body: '{}' });"
        },
        id="events-search",
    ),
    pytest.param(
        {"src/a.ts": "api.post(`/api/conversations/${id}/events/count`, {});"},
        id="events-count",
    ),
    pytest.param(
        {"src/a.ts": "api.post(`/api/conversations/${id}/events/${eventId}`, { role: 'user' });"},
        id="events-single-event",
    ),
    pytest.param(
        {
            "src/a.ts": "api.post(`/api/conversations/${id}/events/respond_to_confirmation`, { accept: true });"
        },
        id="respond-to-confirmation",
    ),
    pytest.param(
        {
            "src/a.ts": "await callCloudProxy({ method: 'POST', path: `/api/conversations/${id}/events`, body: { ...message, run: true } });"
        },
        id="proxy-with-run",
    ),
    pytest.param(
        {
            "src/a.ts": "axios.post(`/api/conversations/${id}/events`, { ...msg, ...(autoRun ? { run: true } : {}) });"
        },
        id="conditional-run",
    ),
    pytest.param(
        {
            "agent/a.py": """
            def send(client, cid, text):
                payload = {"role": "user", "content": text}
                payload["run"] = True
                client.post(f"/api/conversations/{cid}/events", json=payload)
            """
        },
        id="python-payload-run-assigned",
    ),
    pytest.param(
        {
            "agent/a.py": 'httpx.post(f"{base}/api/conversations/{cid}/events", json={**message, "run": True})\n'
        },
        id="python-splat-then-run",
    ),
    pytest.param(
        {
            "agent/a.py": 'httpx.post(f"{base}/api/conversations/{cid}/events", json=SendMessageRequest(role="user", run=True).model_dump())\n'
        },
        id="python-model-dump-with-run",
    ),
    pytest.param(
        {
            "agent/a.py": 'httpx.post(f"{base}/api/conversations/{cid}/events", json=message.model_dump() | {"run": True})\n'
        },
        id="python-dict-union-with-run",
    ),
    pytest.param(
        {
            "agent/a.py": py("""
            def ask(conversation, text):
                conversation.send_message(text)
                conversation.run()
            """)
        },
        id="python-sdk-then-run",
    ),
    pytest.param(
        {
            "agent/a.py": py("""
            async def ask(conversation, text):
                conversation.send_message(text)
                await conversation.arun()
            """)
        },
        id="python-sdk-then-arun",
    ),
    pytest.param(
        {
            "agent/a.py": py("""
            def ask(conversation, text):
                worker = threading.Thread(target=conversation.run)
                worker.start()
                conversation.send_message(text)
            """)
        },
        id="python-sdk-running-in-thread",
    ),
    pytest.param(
        {"agent/a.py": "def notify(bot, text):\n    bot.send_message(text)\n"},
        id="python-send-message-without-sdk",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            const bash = new WebSocket(`${wsBase}/sockets/bash-events/${id}`);
            bash.send(JSON.stringify({ command: "ls" }));
            """)
        },
        id="bash-socket",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            const ws = new WebSocket(`${wsBase}/sockets/events/${id}`);
            ws.send(JSON.stringify({ role: "user", content, run: true }));
            """)
        },
        id="websocket-with-run",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function start(text) {
              return createCloudAppConversation({ initial_message: { role: "user", content: text } });
            }
            export const startRaw = (text) =>
              fetch(`${cloud}/api/v1/app-conversations`, { method: "POST", body: JSON.stringify({ initial_message: { role: "user", content: text } }) });
            """)
        },
        id="app-server-start",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            export async function start(text) {
              if (getActiveBackend().backend.kind === "cloud") {
                const request: AppConversationStartRequest = {
                  initial_message: text ? { role: "user", content: [{ type: "text", text }] } : null,
                };
                return createTask(request);
              }
              return client.createConversation({ initial_message: { role: "user", content: text, run: true } });
            }
            """)
        },
        id="cloud-branch-start",
    ),
    pytest.param(
        {
            "src/a.ts": ts("""
            function buildInitialMessage(text) { return { role: "user", content: text, run: true }; }
            export const payload = { initial_message: buildInitialMessage("x"), other: { initial_message: null } };
            """)
        },
        id="initial-message-builder-adds-run",
    ),
    pytest.param(
        {"src/a.ts": TS + "const payload = { initial_message: getMessage(), agent };"},
        id="initial-message-opaque",
    ),
    pytest.param(
        {
            "src/msw/handlers.ts": ts(
                "export const h = http.post('*/api/conversations/:id/events', async ({ request }) => ok());"
            ),
            "server/routes.ts": ts(
                "router.post('/api/conversations/:conversationId/events', auth, (req, res) => res.send(JSON.stringify({ ok: true })));"
            ),
            "server/app.py": py("""
            @router.post("/api/conversations/{conversation_id}/events")
            async def send_event(conversation_id: str, request: SendMessageRequest):
                return await service.send(conversation_id, request)
            """),
        },
        id="routes-and-handlers-define-paths",
    ),
    pytest.param(
        {"src/a.ts": TS + "analytics.sendEvent('clicked_send', { role: 'user' });"},
        id="analytics-sendEvent",
    ),
    pytest.param(
        {
            "src/chat.ts": """
            export async function send(id, text) {
              await fetch(`/api/conversations/${id}/messages`, { method: "POST", body: JSON.stringify({ text }) });
              socket.send(JSON.stringify({ role: "user", content: text }));
            }
            """
        },
        id="not-an-agent-server",
    ),
    pytest.param(
        {
            "src/__tests__/chat.test.ts": TS + "await client.sendEvent(id, { role: 'user' });",
            "src/mocks/handlers.ts": TS
            + "http.post('*/api/conversations/:id/events', () => ok());\nsendEvent(id, msg);",
            "tests/test_send.py": PY
            + "def test_x(conversation):\n    conversation.send_message('x')\n",
        },
        id="tests-and-mocks-skipped",
    ),
]


@pytest.mark.parametrize("files", VALID)
def test_valid(files: dict[str, str]) -> None:
    result = review(CHECK, *(whole_file(path, code) for path, code in files.items()))
    assert result.findings == ()
    assert result.incomplete == ()


def test_untouched_sends_are_not_reported() -> None:
    code = ts(
        """
        export async function old(client, id) {
          await client.sendEvent(id, { role: "user" });
        }
        export const added = 1; // NEW
        export async function fresh(client, id) { // NEW
          await client.sendEvent(id, { role: "user" }); // NEW HERE
        } // NEW
        """
    )
    result = review(CHECK, partly_added("src/chat.ts", code))
    assert [f.line for f in result.findings] == [marked_line(code)]


def test_touching_the_message_variable_reports_the_send() -> None:
    code = ts(
        """
        export async function send(client, id, text) {
          const message = { role: "user", content: text }; // NEW HERE
          await client.sendEvent(id, message);
        }
        """
    )
    result = review(CHECK, partly_added("src/chat.ts", code))
    assert [(f.line, f.severity) for f in result.findings] == [(marked_line(code), CRITICAL)]


_CLIENT_FILE = whole_file("src/client.ts", TS + "export const client = new ConversationClient(o);")
_BASE_WITH_RUN = ts(
    """
    export async function send(client, id, text) {
      await client.sendEvent(id, { // CALL
        role: "user",
        content: text,
      }, {
        run: true,
      });
    }
    """
)


@pytest.mark.parametrize("whole", [True, False], ids=["whole-file", "patch-only"])
def test_deleting_run_true_is_reported_on_the_call(whole: bool) -> None:
    head = _BASE_WITH_RUN.replace("  }, {\n    run: true,\n  });", "  });")
    assert head != _BASE_WITH_RUN
    changed = from_versions("src/chat.ts", _BASE_WITH_RUN, head, whole=whole)
    assert changed.added == {}  # a pure deletion
    # With the patch only, the import is outside the hunk: another file carries the signal.
    result = review(CHECK, changed, _CLIENT_FILE)
    expected = marked_line(head, "CALL")
    assert [(f.line, f.severity) for f in result.findings] == [(expected, CRITICAL)]
    assert "removes `run: true`" in result.findings[0].message


def test_deleting_run_true_reports_on_the_nearest_added_line() -> None:
    head = _BASE_WITH_RUN.replace("{\n    run: true,\n  }", "{ timeoutMs: 5 }")
    assert head != _BASE_WITH_RUN
    result = review(CHECK, from_versions("src/chat.ts", _BASE_WITH_RUN, head))
    assert [(f.line, f.severity) for f in result.findings] == [
        (marked_line(head, "timeoutMs"), CRITICAL)
    ]
    assert "removes `run: true`" in result.findings[0].message


def test_deleting_run_true_from_python_payload() -> None:
    base = py(
        """
        def send(c, cid):
            c.post(f"/api/conversations/{cid}/events", json={  # CALL
                "role": "user",
                "run": True,
            })
        """
    )
    head = base.replace('        "run": True,\n', "")
    assert head != base
    result = review(CHECK, from_versions("agent/send.py", base, head, whole=False))
    assert [(f.line, f.severity) for f in result.findings] == [
        (marked_line(head, "CALL"), CRITICAL)
    ]


def test_deleting_an_unrelated_line_does_not_report_an_old_send() -> None:
    base = TS + "// a comment about run\nawait client.sendEvent(id, { role: 'user' });\n"
    head = TS + "await client.sendEvent(id, { role: 'user' });\n"
    assert review(CHECK, from_versions("src/chat.ts", base, head)).findings == ()


def test_patch_only_file_reports_what_the_diff_shows() -> None:
    base = TS + "const keep = 1;\n" * 30 + "export const a = 1;\n"
    head = base.replace(
        "export const a = 1;\n",
        "export const a = 1;\nawait client.sendEvent(id, { role: 'user', content });\n",
    )
    changed = from_versions("src/chat.ts", base, head, whole=False)
    assert changed.head_text is None
    result = review(CHECK, changed, _CLIENT_FILE)
    assert [(f.line, f.severity) for f in result.findings] == [(33, CRITICAL)]


def test_patch_only_file_with_an_unseen_message_is_incomplete_not_noisy() -> None:
    base = TS + "const message = { role: 'user', run: true };\n" + "const keep = 1;\n" * 30
    head = base + "await client.sendEvent(id, message);\n"
    changed = from_versions("src/chat.ts", base, head, whole=False)
    result = review(CHECK, changed, _CLIENT_FILE)
    assert result.findings == ()
    assert len(result.incomplete) == 1
    assert "src/chat.ts" in result.incomplete[0] and "`message`" in result.incomplete[0]


def test_signal_in_another_changed_file_brings_a_file_in_scope() -> None:
    ws_file = """
    export function connect(url) {
      const ws = new WebSocket(url);
      return (message) => ws.send(JSON.stringify({ role: "user", content: message })); // HERE
    }
    """
    other = whole_file("src/client.ts", TS + "export const client = new ConversationClient(o);")
    result = review(CHECK, whole_file("src/socket.ts", ws_file), other)
    assert [(f.line, f.severity) for f in result.findings] == [(marked_line(ws_file), SUGGESTION)]
    # Without an agent-server signal anywhere in the change the same code is not reported.
    assert review(CHECK, whole_file("src/socket.ts", ws_file)).findings == ()


def test_ignored_paths_are_not_reported() -> None:
    from reviewbot.checks.base import CheckContext
    from reviewbot.models import ChangeSet, ReviewConfig

    changed = whole_file("vendor/chat.ts", TS + "await client.sendEvent(id, msg);")
    context = CheckContext(
        ChangeSet("a", "b", [changed]), config=ReviewConfig(ignore_paths=("vendor/**",))
    )
    assert CHECK.run(context).findings == ()
