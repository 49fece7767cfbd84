"""The web app: its checks without a browser, then the page driven in a real headless Chromium."""

from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error
from PIL import Image

from tessera.app.browser import chromium, free_port, missing, open_tab, status, wait
from tessera.app.readings import instruction_verdict
from tessera.app.service import SCALE, Service, read_mask
from tessera.app.uploads import Limits, enlarge, read_upload, to_canvas
from tessera.errors import CheckpointError, InputError
from tessera.model.bundle import load as load_bundle
from tessera.world import language
from tessera.world.grammar import parse_edit
from tessera.world.render import render_image
from tessera.world.samples import render_prompt
from tessera.world.scene import sample_scene

ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artefacts"


@pytest.fixture(scope="module")
def service(reader, judge, tmp_path_factory):
    """The app's service on the tiny reading model (t2i, caption, qa, judge), uploads in its own folder."""
    folder = tmp_path_factory.mktemp("app")
    return Service({"reader": load_bundle(reader[0])}, judge, folder, Limits(images=4, upload_bytes=50_000))


def test_instruction_verdict_holds_for_true_edits_and_fails_for_none(judge):
    """Read by the judge, a scene and the scene the world makes of an instruction pass; the unedited scene fails."""
    rng = np.random.default_rng(0)
    held, unchanged_held, n = 0, 0, 0
    for op in language.EDIT_OPS:
        made = 0
        while made < 8:
            scene = sample_scene(rng, 64)
            try:
                instruction, after = language.edit_instruction(scene, rng, op)
            except ValueError:
                continue
            before_read, after_read = judge.read(np.stack([render_image(scene), render_image(after)]))
            held += instruction_verdict(parse_edit(instruction), before_read, after_read, 64) == "holds"
            unchanged_held += instruction_verdict(parse_edit(instruction), before_read, before_read, 64) == "holds"
            made, n = made + 1, n + 1
    assert held / n >= 0.9, held / n
    assert unchanged_held == 0


def test_uploads_are_read_only_from_the_app_folder_and_within_the_caps(service, tmp_path):
    picture = render_prompt("a red circle", canvas=32)
    outside = tmp_path / "outside.png"
    Image.fromarray(picture).save(outside)
    with pytest.raises(InputError, match="only files uploaded"):
        read_upload(outside, service.folder, 32, service.limits)
    with pytest.raises(InputError, match="only files uploaded"):  # a way out through ..
        read_upload(service.folder / ".." / outside.name, service.folder, 32, service.limits)
    inside = service.folder / "up" / "scene.png"
    inside.parent.mkdir(exist_ok=True)
    Image.fromarray(enlarge(picture, SCALE)).save(inside)
    assert np.array_equal(read_upload(inside, service.folder, 32, service.limits), picture)  # pixel for pixel back
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big := service.folder / "up" / "noise.png")
    with pytest.raises(InputError, match="bytes"):
        read_upload(big, service.folder, 32, service.limits)
    Image.new("RGB", (2000, 2000)).save(wide := service.folder / "up" / "wide.png")  # small file, many pixels
    with pytest.raises(InputError, match="pixels"):
        read_upload(wide, service.folder, 32, service.limits)
    (service.folder / "up" / "text.png").write_text("not a picture")
    with pytest.raises(InputError, match="not a readable picture"):
        read_upload(service.folder / "up" / "text.png", service.folder, 32, service.limits)


def test_canvas_round_trip_and_painted_masks():
    picture = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(to_canvas(enlarge(picture, 4), 32), picture)
    painted = np.zeros((128, 128), bool)
    painted[10:20, 100:128] = True  # rows 2-4, columns 25-31 of a 32 canvas
    mask = read_mask(painted, 32)
    assert mask.shape == (32, 32) and mask[2:5, 25:].all() and mask.sum() == 3 * 7


def test_requests_are_checked_before_any_work(service):
    with pytest.raises(InputError, match="1 to 4"):
        service.draw("a red circle", 5)
    with pytest.raises(InputError, match="characters"):
        service.draw("a red circle " * 40, 1)
    with pytest.raises(InputError, match="empty"):
        service.draw("   ", 1)
    with pytest.raises(CheckpointError, match="not trained to think"):
        service.think("a red circle", 1)
    with pytest.raises(InputError, match="unknown order"):
        service.draw("a red circle", 1, order="diagonal")


def test_draw_and_read_judge_every_answer(service):
    shown = service.draw("a red circle", 2, seed=3)
    assert [p.shape for p in shown.pictures] == [(32 * SCALE, 32 * SCALE, 3)] * 2
    assert len(shown.captions) == 2 and all(c[0] in "✓✗" for c in shown.captions)
    assert "the judge sees" in shown.report
    scene = service.folder / "scene.png"
    Image.fromarray(render_prompt("two blue squares", canvas=32)).save(scene)
    answer = service.read(str(scene), "ask", "how many squares are there?")
    assert "**the model:**" in answer and "**the judge's answer:**" in answer
    with pytest.raises(InputError):
        service.read(str(scene), "ask", "why is the sky blue?")


def test_the_page_in_a_real_browser(service, reader, cli):
    """Type a bad prompt (the CLI's message, and the app keeps serving), then a good one: an image of the model's
    canvas at the app's scale, with the judge's verdict beside it; then an upload read by the model."""
    pytest.importorskip("gradio")
    if missing():
        pytest.skip(f"needs {missing()} (make test installs them as root)")
    from selenium.webdriver.common.by import By

    from tessera.app.ui import serve

    browser, port = chromium(), free_port()
    page = serve(service, "127.0.0.1", port, block=False)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        prompt = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#t2i-prompt textarea"))[0]
        prompt.clear()
        prompt.send_keys("a red circle above the moon")
        browser.find_element(By.ID, "t2i-go").click()
        message = wait(lambda: status(browser, "t2i"))
        expected = cli("generate", "a red circle above the moon", "--ckpt", str(reader[0])).stderr.strip()
        assert message == expected and message.startswith("error: ")
        prompt.clear()
        prompt.send_keys("a red circle")
        browser.find_element(By.ID, "t2i-go").click()
        wait(lambda: status(browser, "t2i") == "done")
        images = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#t2i-gallery img"))
        sizes = wait(lambda: {(int(i.get_attribute("naturalWidth")), int(i.get_attribute("naturalHeight")))
                               for i in images if i.get_attribute("complete") == "true"})  # fmt: skip
        assert sizes == {(32 * SCALE, 32 * SCALE)}
        assert "the judge sees" in browser.find_element(By.ID, "t2i-report").text
        ARTEFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTEFACTS / "app-text-to-image.png"))

        open_tab(browser, "Reading")
        upload = ARTEFACTS / "scene.png"
        Image.fromarray(render_prompt("a green triangle", canvas=32)).save(upload)
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#read-image input[type=file]"))[0].send_keys(str(upload))
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#read-image img"))
        browser.find_element(By.ID, "read-go").click()
        wait(lambda: status(browser, "read") == "done")
        report = browser.find_element(By.ID, "read-report").text
        assert "the model:" in report and "the judge sees: a " in report and "green triangle" in report
        assert list(service.folder.rglob("scene.png"))  # the upload was kept in the app's own folder
        browser.save_screenshot(str(ARTEFACTS / "app-reading.png"))
    finally:
        browser.quit()
        page.close()


def test_app_command_names_a_bad_checkpoint_in_one_line(cli, tmp_path):
    one_line_error(cli("app", "--ckpt", str(tmp_path / "nowhere")), "nowhere")
