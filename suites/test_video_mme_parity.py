"""Video-MME answered by the server under test and by the HF reference engine on the same weights and frames."""

from harness.evals.video_mme_parity import VideoMMEParity


def test_video_mme_parity(harness):
    harness.check(harness.run(VideoMMEParity()))
