"""criteo1tb: DLRM-small click-through prediction on the Criteo 1TB click logs."""
