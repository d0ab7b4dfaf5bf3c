"""Video-MME accuracy for every (model, config) of thresholds.yaml that lists `video_mme`."""

from harness.evals.video_mme import VideoMME


def test_video_mme(harness):
    harness.check(harness.run(VideoMME()))
