//! pcap capture files: reading and writing the link types `esp-pcap` supports.
