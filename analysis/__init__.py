"""servecap analysis: pure functions from results frames to statistics and capacity estimates."""
