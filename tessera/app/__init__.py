"""`tessera app`: a web app (Gradio) for everything a checkpoint does, each picture judged beside it."""
