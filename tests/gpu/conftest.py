"""Tests here run inside the real ComfyUI host: boot it and import the whole pack first."""
import ja_host

ja_host.load_pack()
