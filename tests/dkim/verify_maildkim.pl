#!/usr/bin/perl
# Verify every DKIM-Signature of each file with Mail::DKIM; keys come from a DNS server.
# usage: verify_maildkim.pl SERVER PORT FILE...   prints "FILE IDX ALG RESULT DETAIL"
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($server, $port, @files) = @ARGV;
my $res = Net::DNS::Resolver->new(nameservers => [$server], port => $port, recurse => 1,
                                  udp_timeout => 5, tcp_timeout => 5);
Mail::DKIM::DNS::resolver($res);
for my $f (@files) {
    open(my $fh, '<:raw', $f) or die "$f: $!";
    my $v = Mail::DKIM::Verifier->new();
    my $buf;
    while (read($fh, $buf, 65536)) {
        $v->PRINT($buf);
    }
    $v->CLOSE();
    close($fh);
    my $i = 0;
    for my $s ($v->signatures) {
        my $d = $s->result_detail // '';
        $d =~ s/\s+/_/g;
        printf "%s %d %s %s %s\n", $f, $i++, $s->algorithm // '?', $s->result // 'none', $d;
    }
}
