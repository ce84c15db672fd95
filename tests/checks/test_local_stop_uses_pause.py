# ruff: noqa: E501  (the case tables hold source lines as long as real code has them)
"""local-stop-uses-pause: a stop handler pausing a local conversation instead of interrupting.

INVALID cases must fire (important) on the line marked ``HERE`` (missing if not); VALID
cases must not fire (noisy if they do).
"""

from __future__ import annotations

import pytest

from reviewbot.checks.local_stop_pause import CHECK, RULE
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


INVALID: list[object] = [
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(client: ConversationClient, id: string) {
              await client.pauseConversation(id); // HERE
            }
            """)
        },
        id="stopAgent-client-pause",
    ),
    pytest.param(
        {
            "src/useStop.tsx": ts("""
            export function useStop(id: string) {
              const handleStop = useCallback(async () => {
                await fetch(`${baseUrl}/api/conversations/${id}/pause`, { method: "POST" }); // HERE
              }, [id]);
              return handleStop;
            }
            """)
        },
        id="useCallback-raw-fetch-template",
    ),
    pytest.param(
        {
            "src/controller.ts": ts("""
            export class AgentController {
              async cancel() {
                await this.client.pauseConversation(this.conversationId); // HERE
              }
            }
            """)
        },
        id="class-method-cancel",
    ),
    pytest.param(
        {
            "src/api.js": ts("""
            export function abortRun(base, id) {
              return axios.post(base + "/api/conversations/" + id + "/pause"); // HERE
            }
            """)
        },
        id="axios-concatenated-url",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function cancelRun(client, id, backend) {
              if (backend.kind !== "cloud") {
                await client.pauseConversation(id); // HERE
              }
            }
            """)
        },
        id="inside-not-cloud-check",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopConversation(id) {
              if (getActiveBackend().backend.kind === "cloud") {
                await pauseSandbox(sandboxId);
                return;
              }
              await client.pauseConversation(id); // HERE
            }
            """)
        },
        id="after-cloud-early-return",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopConversation(id, backend) {
              if (backend.kind === "cloud") {
                await pauseSandbox(sandboxId);
              } else {
                await client.pauseConversation(id); // HERE
              }
            }
            """)
        },
        id="else-of-cloud-check",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stop(id) {
              if (!isCloud()) {
                await client.pauseConversation(id); // HERE
              }
            }
            """)
        },
        id="negated-isCloud-helper",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export const stop = async (id) =>
              isCloudBackend ? pauseSandbox(id) : client.pauseConversation(id); // HERE
            """)
        },
        id="ternary-local-arm",
    ),
    pytest.param(
        {
            "src/Toolbar.tsx": ts("""
            export function Toolbar({ id }) {
              return (
                <AgentControls
                  onStop={() => client.pauseConversation(id)} // HERE
                />
              );
            }
            """)
        },
        id="jsx-onStop-attribute",
    ),
    pytest.param(
        {
            "src/Toolbar.tsx": ts("""
            export function Toolbar({ id }) {
              return (
                <Button aria-label="Stop agent" onClick={() => client.pauseConversation(id)}> {/* HERE */}
                  <StopIcon />
                </Button>
              );
            }
            """)
        },
        id="button-labelled-stop",
    ),
    pytest.param(
        {
            "src/Toolbar.jsx": ts("""
            export const Toolbar = () => (
              <button onClick={() => client.pauseConversation(id)}>Stop</button> // HERE
            );
            """)
        },
        id="button-with-stop-text",
    ),
    pytest.param(
        {
            "src/cli.ts": ts("""
            process.on("SIGINT", async () => {
              await client.pauseConversation(conversationId); // HERE
            });
            """)
        },
        id="sigint-inline-handler",
    ),
    pytest.param(
        {
            "src/cli.ts": ts("""
            async function shutdown() {
              await client.pauseConversation(conversationId); // HERE
            }
            process.on("SIGTERM", shutdown);
            """)
        },
        id="registered-named-handler",
    ),
    pytest.param(
        {
            "src/cli.ts": ts("""
            const controller = new AbortController();
            controller.signal.addEventListener("abort", () => client.pauseConversation(id)); // HERE
            """)
        },
        id="abort-listener",
    ),
    pytest.param(
        {
            "src/actions.ts": ts("""
            export const actions = {
              onCancel: (id) => client.pauseConversation(id), // HERE
            };
            """)
        },
        id="object-key-onCancel",
    ),
    pytest.param(
        {
            "src/hooks.ts": ts("""
            export function useConversationControls(id) {
              const stopMutation = useMutation({
                mutationFn: () => client.pauseConversation(id), // HERE
              });
              return stopMutation;
            }
            """)
        },
        id="use-mutation-stop",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export class Panel {
              handleStop = async () => {
                await this.client.pauseConversation(this.id); // HERE
              };
            }
            """)
        },
        id="class-field-arrow",
    ),
    pytest.param(
        {
            "src/commands.ts": ts("""
            export async function onCommand(command, id) {
              switch (command) {
                case "stop":
                  await client.pauseConversation(id); // HERE
                  break;
              }
            }
            """)
        },
        id="switch-case-stop",
    ),
    pytest.param(
        {
            "src/commands.ts": ts("""
            export async function onKey(key, id) {
              if (key === "halt") {
                await fetch(`/api/conversations/${id}/pause`, { method: "POST" }); // HERE
              }
            }
            """)
        },
        id="if-command-halt",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function interruptAgent(id) {
              await client.pauseConversation(id); // HERE
            }
            """)
        },
        id="named-interrupt-but-pauses",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            async function doPause(id) {
              await client.pauseConversation(id); // HERE
            }
            export async function haltAgent(id) {
              await doPause(id);
            }
            """)
        },
        id="wrapper-same-file-reported-inside",
    ),
    pytest.param(
        {
            "src/api.ts": ts("""
            export async function pauseAgent(id) {
              await fetch(`${base}/api/conversations/${id}/pause`, { method: "POST" }); // HERE
            }
            """),
            "src/Stop.tsx": source("""
            import * as api from "./api";
            export const StopButton = ({ id }) => (
              <button onClick={() => api.pauseAgent(id)}>Stop</button>
            );
            """),
        },
        id="wrapper-in-other-file-reported-inside",
    ),
    pytest.param(
        {
            "src/hooks/conversation-utils.ts": ts("""
            /** Stop a running conversation. */
            export const pauseConversation = async (conversationId: string) => {
              const { conversationUrl, sessionApiKey, sandboxId } = await fetchConversationData(conversationId);
              if (getActiveBackend().backend.kind === "cloud") {
                await pauseCloudSandbox(sandboxId);
                return { success: true };
              }
              return new ConversationClient( // HERE
                getAgentServerClientOptions({ conversationUrl, sessionApiKey }),
              ).pauseConversation(conversationId);
            };
            """)
        },
        id="pause-named-wrapper-with-cloud-guard",
    ),
    pytest.param(
        {
            "src/toggle.ts": ts(
                "export const onPauseToggle = (id) => client.pauseConversation(id); // HERE"
            )
        },
        id="pause-toggle-on-local-backend",
    ),
    pytest.param(
        {
            "src/Controls.tsx": ts("""
            export function Controls({ id }) {
              const handlePause = () => client.pauseConversation(id); // HERE
              return <button onClick={handlePause}>Pause</button>;
            }
            """)
        },
        id="pause-button-on-local-backend",
    ),
    pytest.param(
        {
            "src/refresh.ts": ts(
                "export async function leave(id) { await client.pauseConversation(id); } // HERE"
            )
        },
        id="pause-without-a-stop-name",
    ),
    pytest.param(
        {
            "agent/runner.py": py("""
            class Runner:
                def _pause_conversation(self):
                    self.conversation.pause()

                def cancel(self):
                    self._pause_conversation()  # HERE
            """)
        },
        id="python-stop-calls-sdk-pause-wrapper",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(id) {
              const conversation = new RemoteConversation(agent, workspace, { conversationId: id });
              await conversation.pause(); // HERE
            }
            """)
        },
        id="ts-remote-conversation-pause",
    ),
    pytest.param(
        {
            "src/stop.mjs": ts(
                "export const stop = (id) => api.post(`/api/conversations/${id}/pause`, {}); // HERE"
            )
        },
        id="mjs-arrow-post",
    ),
    # ---- Python ----
    pytest.param(
        {
            "agent/cli.py": py("""
            def main(conversation):
                try:
                    conversation.run()
                except KeyboardInterrupt:
                    conversation.pause()  # HERE
            """)
        },
        id="python-keyboard-interrupt",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            async def main(conversation):
                try:
                    await conversation.arun()
                except (asyncio.CancelledError, RuntimeError):
                    conversation.pause()  # HERE
            """)
        },
        id="python-cancelled-error",
    ),
    pytest.param(
        {
            "agent/runner.py": py("""
            class Runner:
                def stop(self):
                    self.conversation.pause()  # HERE
            """)
        },
        id="python-method-stop",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            import signal

            def handler(signum, frame):
                conversation.pause()  # HERE

            signal.signal(signal.SIGINT, handler)
            """)
        },
        id="python-signal-registered",
    ),
    pytest.param(
        {
            "agent/api.py": py("""
            import httpx

            def stop_agent(base, cid):
                httpx.post(f"{base}/api/conversations/{cid}/pause")  # HERE
            """)
        },
        id="python-raw-httpx",
    ),
    pytest.param(
        {
            "agent/repl.py": py("""
            def repl(conversation):
                while True:
                    line = input()
                    if line in ("/stop", "/quit"):
                        conversation.pause()  # HERE
            """)
        },
        id="python-repl-stop-command",
    ),
    pytest.param(
        {
            "agent/jobs.py": py("""
            def cancel_task(workspace):
                c = RemoteConversation(agent=agent, workspace=workspace)
                c.pause()  # HERE
            """)
        },
        id="python-bound-to-remote-conversation",
    ),
    pytest.param(
        {
            "agent/jobs.py": py("""
            def abort(job, convo: RemoteConversation):
                convo.pause()  # HERE
            """)
        },
        id="python-annotated-parameter",
    ),
    pytest.param(
        {
            "agent/jobs.py": py("""
            def halt(client, cid):
                return client.request("POST", f"/api/conversations/{cid}/pause")  # HERE
            """)
        },
        id="python-request-post",
    ),
]


@pytest.mark.parametrize("files", INVALID)
def test_invalid(files: dict[str, str]) -> None:
    marked = [(path, code) for path, code in files.items() if "HERE" in code]
    assert len(marked) == 1
    path, code = marked[0]
    result = review(CHECK, *(whole_file(name, text) for name, text in files.items()))
    found = [(f.path, f.line, f.severity) for f in result.findings]
    assert found == [(path, marked_line(code), Severity.IMPORTANT)]
    finding = result.findings[0]
    assert finding.rule == RULE
    assert "interrupt" in finding.message and "1.23.0" in finding.message


VALID: list[object] = [
    pytest.param(
        {
            "src/api.ts": ts("""
            export async function pauseConversation(id: string) {
              return client.interruptConversation(id);
            }
            """)
        },
        id="named-pause-calls-interrupt",
    ),
    pytest.param(
        {
            "src/api.ts": ts("""
            export async function pauseConversation(id) { return client.interruptConversation(id); }
            export async function stopAgent(id) { await pauseConversation(id); }
            """)
        },
        id="stop-calls-wrapper-that-interrupts",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export async function stopAgent(id) { await client.interruptConversation(id); }"
            )
        },
        id="stop-interrupts",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export const stop = (id) => fetch(`${base}/api/conversations/${id}/interrupt`, { method: 'POST' });"
            )
        },
        id="raw-interrupt",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(id, backend) {
              if (backend.kind === "cloud") {
                await client.pauseConversation(id);
                return;
              }
              await client.interruptConversation(id);
            }
            """)
        },
        id="cloud-branch",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(id, backend) {
              if (backend.kind !== "cloud") {
                await client.interruptConversation(id);
              } else {
                await client.pauseConversation(id);
              }
            }
            """)
        },
        id="else-of-not-cloud",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(id) {
              if (!isCloud) {
                await client.interruptConversation(id);
                return;
              }
              await client.pauseConversation(id);
            }
            """)
        },
        id="after-local-early-return",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export const stop = (id) => (isCloud ? client.pauseConversation(id) : client.interruptConversation(id));"
            )
        },
        id="ternary-cloud-arm",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export function stop(id) { isCloudMode() && client.pauseConversation(id); }"
            )
        },
        id="and-cloud-arm",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export function stop(id) { switch (kind) { case 'cloud': client.pauseConversation(id); break; } }"
            )
        },
        id="switch-cloud",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export function stop(id) { if (kind === BackendKind.Cloud) { client.pauseConversation(id); } }"
            )
        },
        id="enum-cloud",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export const stop = (sid) => fetch(`${cloud}/api/v1/sandboxes/${sid}/pause`, { method: 'POST' });"
            )
        },
        id="sandbox-pause",
    ),
    pytest.param(
        {
            "src/stop.ts": ts(
                "export const stop = (id) => api.post(`/api/v1/app-conversations/${id}/pause`);"
            )
        },
        id="app-conversations-pause",
    ),
    pytest.param(
        {
            "src/client.ts": ts("""
            export class ConversationClient {
              async pauseConversation(id) {
                return this.client.post(`/api/conversations/${id}/pause`, {});
              }
            }
            """)
        },
        id="client-implementation",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            export async function stopAgent(id) {
              await client.pauseConversation(id);
            }
            export async function handleStop(id) {
              await stopAgent(id);
            }
            """).replace(
                "await client.pauseConversation(id);", "await client.interruptConversation(id);"
            )
        },
        id="stop-wrapper-chain-interrupts",
    ),
    pytest.param(
        {
            "agent/controller.py": py("""
            class StopController:
                def pause_for_review(self):
                    self.conversation.pause()
            """)
        },
        id="python-pause-named-inside-stop-class",
    ),
    pytest.param(
        {
            "src/Player.tsx": ts("""
            export function stopPlayback(video) {
              video.pause();
            }
            """)
        },
        id="media-pause-in-stop",
    ),
    pytest.param(
        {
            "src/status.ts": ts(
                "export const stop = (id) => api.get(`/api/conversations/${id}/pause_status`);"
            )
        },
        id="other-endpoint-starting-with-pause",
    ),
    pytest.param(
        {
            "src/status.ts": ts(
                "export const stop = (id) => api.get(`/api/conversations/${id}/pause`);"
            )
        },
        id="get-request",
    ),
    pytest.param(
        {
            "src/stop.ts": ts("""
            async function pauseRuntime(id, backend) {
              if (backend.kind === "cloud") {
                await client.pauseConversation(id);
              }
            }
            export async function stopAgent(id, backend) {
              await pauseRuntime(id, backend);
              await client.interruptConversation(id);
            }
            """)
        },
        id="wrapper-pauses-only-on-cloud",
    ),
    pytest.param(
        {
            "src/Toolbar.tsx": ts("""
            export const Toolbar = ({ id }) => (
              <button aria-label="Stop" onClick={() => client.interruptConversation(id)}>Stop</button>
            );
            """)
        },
        id="stop-button-interrupts",
    ),
    pytest.param(
        {
            "src/chat.ts": """
            export async function stopConversation(id) {
              await fetch(`/api/conversations/${id}/pause`, { method: "POST" });
              await voiceEngine.pauseConversation();
            }
            """
        },
        id="not-an-agent-server",
    ),
    pytest.param(
        {
            "src/msw/stop-handlers.ts": ts(
                "export const stopHandler = http.post('*/api/conversations/:id/pause', () => ok());"
            ),
            "server/stop.ts": ts(
                "router.post('/api/conversations/:id/pause', (req, res) => res.json({ ok: true }));"
            ),
        },
        id="route-definitions",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            def stop_music(player):
                player.pause()
            """)
        },
        id="python-other-pause",
    ),
    pytest.param(
        {
            "agent/example.py": py("""
            def pause_later(conversation):
                time.sleep(5)
                conversation.pause()
            """)
        },
        id="python-deliberate-pause",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            def main(conversation):
                try:
                    conversation.run()
                except KeyboardInterrupt:
                    conversation.interrupt()
            """)
        },
        id="python-interrupt",
    ),
    pytest.param(
        {
            "agent/cli.py": py("""
            def stop(conversation, backend):
                if backend.kind == "cloud":
                    conversation.pause()
                else:
                    conversation.interrupt()
            """)
        },
        id="python-cloud-branch",
    ),
    pytest.param(
        {
            "src/__tests__/stop.test.ts": ts(
                "it('stops', async () => { const stop = () => client.pauseConversation(id); });"
            ),
            "src/mocks/handlers.ts": ts(
                "export const stopHandler = http.post('*/api/conversations/:id/pause', () => ok());"
            ),
            "tests/test_cli.py": py("def test_stop(conversation):\n    conversation.pause()\n"),
        },
        id="tests-and-mocks-skipped",
    ),
]


@pytest.mark.parametrize("files", VALID)
def test_valid(files: dict[str, str]) -> None:
    result = review(CHECK, *(whole_file(path, code) for path, code in files.items()))
    assert result.findings == ()
    assert result.incomplete == ()


def test_a_stop_wrapper_is_reported_once_not_again_at_its_callers() -> None:
    code = ts(
        """
        export async function stopAgent(id) {
          await client.pauseConversation(id); // HERE
        }
        export async function handleStop(id) {
          await stopAgent(id);
        }
        """
    )
    result = review(CHECK, whole_file("src/stop.ts", code))
    assert [f.line for f in result.findings] == [marked_line(code)]


def test_stop_calling_an_unchanged_wrapper_is_reported_at_the_call() -> None:
    api = ts(
        """
        export async function pauseAgent(id) {
          await fetch(`${base}/api/conversations/${id}/pause`, { method: "POST" });
        }
        export const added = 1; // NEW
        """
    )
    ui = ts(
        """
        import * as api from "./api";
        export async function stopAgent(id) { // NEW
          await api.pauseAgent(id); // NEW HERE
        } // NEW
        export const later = (id) => api.pauseAgent(id); // NEW
        """
    )
    result = review(CHECK, partly_added("src/api.ts", api), partly_added("src/ui.ts", ui))
    assert [(f.path, f.line) for f in result.findings] == [("src/ui.ts", marked_line(ui))]
    assert "pauseAgent" in result.findings[0].message


def test_caller_of_an_unchanged_pause_conversation_wrapper_is_reported() -> None:
    utils = ts(
        """
        export const pauseConversation = async (id) => {
          return new ConversationClient(options()).pauseConversation(id);
        };
        export const touched = 1; // NEW
        """
    )
    hook = source(
        """
        import { pauseConversation } from "./utils";
        export const useStop = () => useMutation({ mutationFn: (id) => pauseConversation(id) }); // NEW HERE
        """
    )
    result = review(CHECK, partly_added("src/utils.ts", utils), partly_added("src/hook.ts", hook))
    assert [(f.path, f.line) for f in result.findings] == [("src/hook.ts", marked_line(hook))]


def test_untouched_pause_is_not_reported() -> None:
    code = ts(
        """
        export async function stopAgent(id) {
          await client.pauseConversation(id);
        }
        export async function cancelAgent(id) { // NEW
          await client.pauseConversation(id); // NEW HERE
        } // NEW
        """
    )
    result = review(CHECK, partly_added("src/stop.ts", code))
    assert [f.line for f in result.findings] == [marked_line(code)]


def test_swapping_interrupt_for_pause_is_reported() -> None:
    base = ts(
        """
        export async function stopAgent(id) {
          await client.interruptConversation(id);
        }
        """
    )
    head = base.replace("interruptConversation", "pauseConversation")
    result = review(CHECK, from_versions("src/stop.ts", base, head))
    assert [f.line for f in result.findings] == [marked_line(head, "pauseConversation")]


def test_patch_only_file() -> None:
    base = ts(
        "export async function stopAgent(id) {\n  await client.interruptConversation(id);\n}\n"
    )
    head = base.replace("interruptConversation", "pauseConversation")
    changed = from_versions("src/stop.ts", base, head, whole=False)
    assert changed.head_text is None
    result = review(CHECK, changed)
    assert [(f.line, f.severity) for f in result.findings] == [
        (marked_line(head, "pauseConversation"), Severity.IMPORTANT)
    ]


def test_message_names_the_handler_and_python_sdk_version() -> None:
    code = py(
        """
        def stop_run(conversation):
            conversation.pause()
        """
    )
    (finding,) = review(CHECK, whole_file("agent/run.py", code)).findings
    assert "stop_run" in finding.message
    assert "conversation.interrupt()" in finding.message and "1.24.0" in finding.message
