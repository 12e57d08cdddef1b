"""The official `openai` Python client against the real `tinygpt serve`: completions and chat
completions, streamed and not, compared with `tinygpt generate` and `tinygpt chat -p`."""

import os
import sys

import openai

from common import Server, cli, run_tests

MODELS = sys.argv[1]
BASE = os.path.join(MODELS, "base.tgpt")
CHAT = os.path.join(MODELS, "chat.tgpt")
KEY = "sk-tinygpt-test"


def client(srv):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_completions():
    with Server(BASE, "--api-key", KEY) as srv:
        c = client(srv)
        assert [m.id for m in c.models.list().data] == ["base"]
        for prompt, n, temp, top_p, top_k, seed in [("ROMEO:", 40, 0.8, 1.0, 40, 3), ("To be", 60, 1.2, 0.9, 0, 11), ("\n", 20, 0.0, 1.0, 40, 0)]:
            want = cli("generate", "-m", BASE, "-p", prompt, "-n", str(n), "--temp", str(temp), "--top-p", str(top_p), "--top-k", str(top_k), "-s", str(seed))
            assert want.startswith(prompt)
            want = want[len(prompt):]
            kw = dict(model="base", prompt=prompt, max_tokens=n, temperature=temp, top_p=top_p, seed=seed, extra_body={"top_k": top_k})
            r = c.completions.create(**kw)
            assert r.choices[0].text == want, (r.choices[0].text, want)
            assert r.choices[0].finish_reason == "length"
            assert r.usage.completion_tokens == n and r.usage.prompt_tokens == len(prompt)
            chunks = list(c.completions.create(stream=True, **kw))
            assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == want
            assert chunks[-1].choices[0].finish_reason == "length"
        r = c.completions.create(model="base", prompt="KING", max_tokens=50, seed=5, stop=["e", "a"])
        full = cli("generate", "-m", BASE, "-p", "KING", "-n", "50", "-s", "5")[4:]
        cut = min(i for i in (full.find("e"), full.find("a"), len(full)) if i >= 0)
        assert r.choices[0].text == full[:cut]
        assert r.choices[0].finish_reason == ("stop" if cut < len(full) else "length")


def test_chat_completions():
    with Server(CHAT, "--api-key", KEY, "--parallel", "2") as srv:
        c = client(srv)
        reasons = set()
        fixed = [("Hello!", 256, 1, None), ("Who art thou?", 8, 2, "Be brief."), ("Speak", 64, 3, None), ("hi", 256, 4, "Answer in verse.")]
        # More seeds until both finish reasons have been seen (which ones stop at <|im_end|>
        # depends on the random weights), at most 40.
        extra = [("Hello!", 256, seed, None) for seed in range(5, 45)]
        for i, (q, n, seed, system) in enumerate(fixed + extra):
            if i >= len(fixed) and reasons == {"stop", "length"}:
                break
            args = ["chat", "-m", CHAT, "-p", q, "-n", str(n), "-s", str(seed), "--temp", "0.7", "--top-k", "20"]
            if system:
                args += ["--system", system]
            want = cli(*args)
            assert want.endswith("\n")
            want = want[:-1]
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
            kw = dict(model="chat", messages=msgs, max_tokens=n, seed=seed, temperature=0.7, extra_body={"top_k": 20})
            r = c.chat.completions.create(**kw)
            assert r.choices[0].message.role == "assistant"
            assert r.choices[0].message.content == want, (r.choices[0].message.content, want)
            reasons.add(r.choices[0].finish_reason)
            chunks = list(c.chat.completions.create(stream=True, **kw))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert text == want, (text, want)
            assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
        assert reasons == {"stop", "length"}, reasons


def test_errors():
    with Server(BASE, "--api-key", KEY) as srv:
        c = client(srv)
        for call, exc in [
            (lambda: c.completions.create(model="gpt-4o", prompt="a", max_tokens=2), openai.NotFoundError),
            (lambda: c.completions.create(model="base", prompt="a", max_tokens=2, temperature=-1), openai.BadRequestError),
            (lambda: c.completions.create(model="base", prompt="\u00e9", max_tokens=2), openai.BadRequestError),
            (lambda: c.chat.completions.create(model="base", messages=[{"role": "user", "content": "a"}]), openai.BadRequestError),
            (lambda: openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0).completions.create(model="base", prompt="a"), openai.AuthenticationError),
        ]:
            try:
                call()
            except exc as e:
                assert e.body and e.body.get("message"), e.body
            else:
                raise AssertionError("no %s" % exc.__name__)
        srv.wait_idle(key=KEY)


sys.exit(run_tests([test_completions, test_chat_completions, test_errors]))
