"""What the capabilities' figures share: the offline HTML writer (`html`), token-coloured text
(`tokens`) and one colour scheme (`colors`). Imports no capability; figures themselves live in
each capability's `figures.py`."""
