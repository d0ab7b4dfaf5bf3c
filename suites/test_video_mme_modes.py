"""Video-MME asked with client-side frames and with `video_url` on the same server, question by question."""

from harness.evals.video_mme_modes import VideoMMEModes


def test_video_mme_modes(harness):
    harness.check(harness.run(VideoMMEModes()))
