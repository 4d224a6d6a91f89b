"""The pure rule core: plain functions of (state, event, rules) with no faust, asyncio or I/O."""
