"""The page at `/` in a real headless Chromium (Selenium): type a prompt, press the button, wait
for the streamed text and compare it with the CLI's; the chat view with history; the stop button.
Screenshots are saved beside the test log."""

import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from common import OUT, Server, cli, run_tests

MODELS = sys.argv[1]
BASE = os.path.join(MODELS, "base.tgpt")
CHAT = os.path.join(MODELS, "chat.tgpt")
SLOW = os.path.join(MODELS, "slow.tgpt")


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)


def set_value(d, id_, value):
    el = d.find_element(By.ID, id_)
    el.clear()
    el.send_keys(str(value))


def wait_done(d, timeout=60):
    WebDriverWait(d, timeout).until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "error", "stopped")))
    status = d.find_element(By.ID, "status").text
    assert status.startswith("done"), status
    return status


def text_of(d, id_):
    return d.execute_script("return document.getElementById(arguments[0]).textContent", id_)


def test_completion_page():
    with Server(BASE) as srv:
        d = browser()
        try:
            d.get(srv.url + "/")
            name = [l.split()[1] for l in cli("inspect", BASE).splitlines() if l.strip().startswith("name ")][0]
            assert d.find_element(By.ID, "model-name").text == name, name
            assert d.find_element(By.ID, "temperature").get_attribute("value") == "0.8", "the CLI's defaults"
            meta = d.find_element(By.ID, "model-meta").text
            assert "parameters" in meta and "f32" in meta and "validation loss" in meta, meta
            assert not d.find_element(By.ID, "complete-view").get_attribute("hidden")
            for prompt, temp, k, p, n, seed in [("ROMEO:", 0.8, 40, 1, 48, 7), ("O, ", 1.1, 0, 0.9, 30, 99)]:
                set_value(d, "temperature", temp)
                set_value(d, "top_k", k)
                set_value(d, "top_p", p)
                set_value(d, "max_tokens", n)
                set_value(d, "seed", seed)
                set_value(d, "prompt", prompt)
                d.find_element(By.ID, "generate").click()
                wait_done(d)
                want = cli("generate", "-m", BASE, "-p", prompt, "-n", str(n), "--temp", str(temp), "--top-k", str(k), "--top-p", str(p), "-s", str(seed))
                assert text_of(d, "shown-prompt") == prompt
                got = text_of(d, "generated")
                assert prompt + got == want, (got, want)
            os.makedirs(OUT, exist_ok=True)
            d.save_screenshot(os.path.join(OUT, "page-completion.png"))
        finally:
            d.quit()


def test_chat_page():
    with Server(CHAT) as srv:
        d = browser()
        try:
            d.get(srv.url + "/")
            assert not d.find_element(By.ID, "chat-view").get_attribute("hidden"), "a chat model opens the chat view"
            assert "chat model" in d.find_element(By.ID, "model-meta").text
            set_value(d, "seed", 3)
            set_value(d, "max_tokens", 40)
            set_value(d, "chat-input", "Good morrow")
            d.find_element(By.ID, "send").click()
            wait_done(d)
            want = cli("chat", "-m", CHAT, "-p", "Good morrow", "-s", "3", "-n", "40")[:-1]
            turns = d.find_elements(By.CSS_SELECTOR, "#history .turn")
            assert [t.get_attribute("class") for t in turns] == ["turn user", "turn assistant"]
            got = d.execute_script("return arguments[0].textContent", turns[1])
            assert got == want, (got, want)
            # A second turn carries the history: compare with the API given the same messages.
            set_value(d, "chat-input", "And then?")
            d.find_element(By.ID, "send").click()
            wait_done(d)
            turns = d.find_elements(By.CSS_SELECTOR, "#history .turn")
            assert len(turns) == 4
            r = srv.post("/v1/chat/completions", {"messages": [
                {"role": "user", "content": "Good morrow"}, {"role": "assistant", "content": want},
                {"role": "user", "content": "And then?"}], "seed": 3, "max_tokens": 40})
            assert d.execute_script("return arguments[0].textContent", turns[3]) == r["choices"][0]["message"]["content"]
            os.makedirs(OUT, exist_ok=True)
            d.save_screenshot(os.path.join(OUT, "page-chat.png"))
        finally:
            d.quit()


def test_stop_button_frees_the_slot():
    with Server(SLOW, "--max-tokens", "100000") as srv:
        d = browser()
        try:
            d.get(srv.url + "/")
            set_value(d, "max_tokens", 100000)
            set_value(d, "prompt", "a")
            d.find_element(By.ID, "generate").click()
            WebDriverWait(d, 30).until(lambda d: len(text_of(d, "generated")) > 20)
            assert srv.metric("tinygpt_slots_busy") == 1
            d.find_element(By.ID, "stop").click()
            WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "status").text == "stopped")
            srv.wait_idle(10)
            assert srv.metric('tinygpt_cancelled_total{reason="disconnect"}') == 1
            assert srv.metric("tinygpt_generated_tokens_total") < 100000
        finally:
            d.quit()


sys.exit(run_tests([test_completion_page, test_chat_page, test_stop_button_frees_the_slot]))
