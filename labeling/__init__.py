"""Label Studio adapter: the local server (`server`), the API queue (`client`), simulated annotators (`simulate`).

`labeling.client` is the only module in Sluice that imports `label_studio_sdk`; importing this package alone
imports nothing heavy.
"""
