// The customer's wpad.dat for down-pac: hosts on the machine's own network go DIRECT, everything
// else through the backup proxy, then DIRECT. {{proxy:chain-plain}} becomes the address of the
// chain-plain proxy started beside down-pac.
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || isInNet(dnsResolve(host), "10.0.0.0", "255.0.0.0")) return "DIRECT";
  return "PROXY {{proxy:chain-plain}}; DIRECT";
}
