"""The operators' web dashboard: static files (static/) and what serves them, beside the API (`opscore local`, /ui)
or in front of a deployed stack (`opscore dashboard`). Developer tooling: never shipped in a Lambda."""
