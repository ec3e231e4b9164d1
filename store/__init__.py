"""Reading what the price pipeline stored: where it is (:mod:`store.target`), queries (:mod:`store.query`),
the table's shape (:mod:`store.schema`) and exports (:mod:`store.export`)."""
