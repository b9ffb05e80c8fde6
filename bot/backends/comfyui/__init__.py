"""ComfyUI: an API-format workflow whose inputs the request fills (:mod:`.workflow`), A1111's sampler names as
ComfyUI's sampler and scheduler (:mod:`.samplers`), and the server's queue, websocket and files (:mod:`.backend`)."""
