"""The bad-input classes the tests try, what each gets, and the test that proves it.

``docs/bad-input.md`` is rendered from this table and from the headers of the invalid
manifests in ``data/invalid-manifests/``; ``test_bad_input_doc.py`` fails when the file
differs from the rendering or names a test that does not exist, so the page cannot drift
from the tests. Regenerate it with ``python -m tests.badinput.catalogue --write``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-input.md"
MANIFESTS = Path(__file__).resolve().parent / "data" / "invalid-manifests"


@dataclass(frozen=True)
class BadInput:
    """One class of bad input: where it enters, what it is, what it gets, which test shows it."""

    surface: str
    what: str
    answer: str
    test: str  # "module.py::test_name", in tests/badinput/


SHIM = "CNI shims (stdin, environment)"
GRPC = "controller gRPC (IpamService, ResourceService, health, reflection)"
WEBHOOK = "admission webhooks (HTTPS)"
SOCKETS = "sockets (agent and controller unix sockets, webhook port)"

CLASSES: tuple[BadInput, ...] = (
    BadInput(
        SHIM,
        "arbitrary stdin bytes; arbitrary JSON values; a valid config cut short or with bytes changed",
        "exit 1 and `{cniVersion, code, msg, details}`: code 6 when stdin is not a JSON object, "
        "else the first rule it breaks; no traceback; nothing changes",
        "test_shim_fuzz.py::test_the_ipam_shim_answers_any_input_with_a_cni_answer",
    ),
    BadInput(
        SHIM,
        "arbitrary CNI_* variables: absent, unknown command, invalid container ID or ifname, "
        "text that is not UTF-8, a netns that is missing or not a namespace, a bad shim timeout",
        "code 4 (environment), 3 (netns gone), or the verb's own answer; exit status matches; "
        "nothing changes",
        "test_shim_fuzz.py::test_the_coordinator_shim_answers_any_input_with_a_cni_answer",
    ),
    BadInput(
        SHIM,
        "a valid config with one to three fields replaced by arbitrary JSON or removed "
        "(both shims, every CNI version)",
        "code 1, 2, 4, 6, 7, 11 or a project code (100+), or a valid result whose DEL succeeds; "
        "an error changes no pool, SpiderEndpoint or journal",
        "test_shim_fuzz.py::test_the_ipam_shim_answers_any_input_with_a_cni_answer",
    ),
    BadInput(
        SHIM,
        "the same fuzzed calls through the installed executables, as a runtime runs them",
        "one JSON document on stdout, nothing on stderr, exit code agreeing with it",
        "test_shim_fuzz.py::test_the_installed_shims_answer_fuzzed_calls_on_stdout_with_a_matching_exit_code",
    ),
    BadInput(
        SHIM,
        "a config nested 200 or 990 levels deep (the shim decodes 990, the agent's deeper stack "
        "could not: it answered code 999)",
        "code 6 naming the nesting, from the agent (over 100 levels) or the shim (too deep to decode)",
        "test_shim_fuzz.py::test_a_config_nested_too_deep_is_a_decoding_failure_at_either_end",
    ),
    BadInput(
        SHIM,
        "a 300 KiB default pool name in the config (the controller spent seconds compiling it as a "
        "pattern, blocking every other call)",
        "code 7 naming `default_ipv4_ippools[0]` and its bound (STATUS: 50 with the same reason); "
        "nothing changes",
        "test_shim_fuzz.py::test_a_pool_name_beyond_any_kubernetes_name_is_an_invalid_config",
    ),
    BadInput(
        GRPC,
        "random bytes as the request body (a raw generic call)",
        "INVALID_ARGUMENT, ErrorInfo CNI code 6, `the request is not a valid <message>` "
        "(was UNKNOWN with a logged traceback); nothing changes",
        "test_grpc_malformed.py::test_random_bytes_get_a_clear_status_and_change_nothing",
    ),
    BadInput(
        GRPC,
        "undecodable bodies on every method, the health and reflection services included",
        "INVALID_ARGUMENT with CNI code 6; the service goes on serving",
        "test_grpc_malformed.py::test_undecodable_bodies_carry_the_decoding_failure_code",
    ),
    BadInput(
        GRPC,
        "an empty message (every field missing) on each method",
        "INVALID_ARGUMENT naming the field the method needs (CheckCapacity: ready)",
        "test_grpc_malformed.py::test_an_empty_message_names_the_missing_field",
    ),
    BadInput(
        GRPC,
        "fields of the wrong wire type, a string that is not UTF-8, a message of another type",
        "INVALID_ARGUMENT naming the problem; nothing changes",
        "test_grpc_malformed.py::test_fields_of_the_wrong_type_are_refused",
    ),
    BadInput(
        GRPC,
        "256 KiB names, UIDs, container IDs, interface, network and pool names; 5,000 pools; "
        "over 256 KiB of annotations; a 100 KB pool pattern in the ippool annotation; the same in "
        "releases, endpoint lookups and a runtime GC's list of live attachments",
        "INVALID_ARGUMENT naming the field and its bound before anything is read or stored "
        "(a 1 MiB pool name had blocked the controller 12 s; 1 MiB pod names were stored; "
        "releases and lookups looked such names up)",
        "test_grpc_malformed.py::test_huge_strings_are_refused_naming_the_field",
    ),
    BadInput(
        GRPC,
        "a message over the 4 MiB limit",
        "RESOURCE_EXHAUSTED from gRPC itself; the service goes on serving",
        "test_grpc_malformed.py::test_a_message_over_the_size_limit_is_resource_exhausted_and_the_service_goes_on",
    ),
    BadInput(
        GRPC,
        "a manifest (object_json) nested 200 or 5,000 levels deep",
        "INVALID_ARGUMENT naming the nesting (was INTERNAL: RecursionError)",
        "test_grpc_malformed.py::test_a_manifest_nested_too_deep_is_invalid_argument",
    ),
    BadInput(
        WEBHOOK,
        "reviews of every kind, both webhooks, every operation, with fields of the object and the "
        "old object replaced by arbitrary JSON, or arbitrary JSON as the objects",
        "a verdict: allowed, or denied 400, 403 or 422 with a message; never an exception (a 500)",
        "test_webhook_malformed.py::test_any_review_gets_a_verdict_never_an_exception",
    ),
    BadInput(
        WEBHOOK,
        "a review for another kind than the route's; an oldObject that is not a stored object; "
        "malformed SpiderMultusConfig metadata or cniType",
        "denied 400 BadRequest (another kind, unreadable oldObject) or 422 naming the field "
        "(were 500s: crashes in the rules)",
        "test_webhook_malformed.py::test_the_decisions_refuse_what_no_api_server_sends",
    ),
    BadInput(
        WEBHOOK,
        "bodies that are not JSON, a JSON array, the wrong apiVersion, no request, no uid, an "
        "unknown operation, nesting 150 or 5,000 deep, a 17 MiB body",
        "HTTP 400 with the reason (413 over the size limit; nesting was a 500); then a valid review "
        "is answered",
        "test_webhook_malformed.py::test_malformed_bodies_get_400_413_or_a_denial_and_the_server_keeps_serving",
    ),
    BadInput(
        SOCKETS,
        "15 connections on each unix socket sending random bytes, an HTTP/1.1 request, half the "
        "HTTP/2 preface, a preface and random frames, or nothing, all held open",
        "a concurrent ADD through the shim (agent and controller) and its DEL succeed; both "
        "services stay healthy",
        "test_socket_garbage.py::test_garbage_on_the_agent_and_controller_sockets_leaves_others_served",
    ),
    BadInput(
        SOCKETS,
        "the same garbage, plain HTTP/1.1 and a TLS request that never finishes its body, held open "
        "on the webhook port",
        "a valid review over TLS and the health check are answered",
        "test_socket_garbage.py::test_garbage_on_the_webhook_port_leaves_reviews_answered",
    ),
    BadInput(
        "parsers (coverage-guided, atheris/libFuzzer)",
        "bytes mutated by libFuzzer from valid seeds: the shims' handling of stdin and CNI_COMMAND "
        "(agent stubbed unreachable), the agent's CNI input rules for every verb, AdmissionReviews "
        "through parse_review and both webhooks' decisions",
        "the same contracts (a CNI answer; a CniError with a known code; a 400/403/422 verdict); "
        "20,000 inputs per target in the suite (4,000 for the agent), longer by hand; it found a "
        "crash on an oldObject of another kind than the route's",
        "test_atheris.py::test_the_fuzz_target_survives_a_bounded_run",
    ),
    BadInput(
        WEBHOOK,
        "the invalid manifests listed below, through `kubectl apply` and the test API server",
        "refused, each naming its field, nothing stored",
        "test_invalid_manifests_kubectl.py::test_kubectl_apply_refuses_every_invalid_manifest_naming_its_field",
    ),
)


def manifest_rows() -> list[tuple[str, str, str, str]]:
    """(file, kind, field, rule) of every invalid manifest, from its header."""
    rows = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        text = path.read_text()
        header = dict(re.findall(r"^# (field|rule): (.+)$", text, flags=re.MULTILINE))
        kind = yaml.safe_load(text)["kind"]
        rows.append((path.name, kind, header["field"], header["rule"]))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """docs/bad-input.md."""
    lines = [
        "# Bad input: what each kind gets",
        "",
        "<!-- Generated by `python -m tests.badinput.catalogue --write` from",
        "     tests/badinput/catalogue.py and tests/badinput/data/invalid-manifests/;",
        "     tests/badinput/test_bad_input_doc.py keeps it current. -->",
        "",
        "Every class below is tried by a test in `tests/badinput/` (run them with",
        "`.venv/bin/python -m pytest tests/badinput`), against real processes wherever they run",
        "here: the controller on SQLite and the agent on temporary unix sockets, the installed",
        "shims, the webhooks behind the test API server and kubectl. Fuzzed classes use",
        "hypothesis with modest example counts (the suite's budget); a failure prints the",
        "smallest input that breaks the rule.",
        "",
        "Across all of them: no traceback reaches a caller (stdout of a shim, a gRPC status, an",
        "HTTP body), an error changes no state (pools, SpiderEndpoints, journal, stored objects),",
        "and the service goes on serving everyone else.",
        "",
        "| where | bad input | what it gets | test |",
        "|---|---|---|---|",
    ]
    for item in CLASSES:
        lines.append(
            f"| {_cell(item.surface)} | {_cell(item.what)} | {_cell(item.answer)} | `{_cell(item.test)}` |"
        )
    rows = manifest_rows()
    lines += [
        "",
        f"## Invalid manifests refused through kubectl ({len(rows)})",
        "",
        "Each file of `tests/badinput/data/invalid-manifests/` breaks one rule of upstream's",
        "admission webhooks (as `domain/validation.py`, `domain/multus_config.py` and",
        "`domain/coordinator_spec.py` implement them), against the objects of",
        "`tests/badinput/data/existing.yaml`; `kubectl apply` must print a refusal naming the field.",
        "",
        "| manifest | kind | field named | rule |",
        "|---|---|---|---|",
    ]
    for name, kind, field, rule in rows:
        lines.append(f"| `{name}` | {kind} | `{_cell(field)}` | {_cell(rule)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render())
    else:
        sys.stdout.write(render())
