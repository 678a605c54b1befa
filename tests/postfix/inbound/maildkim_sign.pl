#!/usr/bin/perl
# maildkim_sign.pl KEY.pem DOMAIN SELECTOR IN OUT - sign IN with Mail::DKIM (an independent
# signer: libmail-dkim-perl), relaxed/relaxed rsa-sha256, write the signed message to OUT.
use strict;
use warnings;
use Mail::DKIM::Signer;
use Mail::DKIM::TextWrap;

my ($key, $domain, $selector, $in, $out) = @ARGV;
die "usage: $0 KEY DOMAIN SELECTOR IN OUT\n" unless defined $out;
my $signer = Mail::DKIM::Signer->new(
    Algorithm => 'rsa-sha256', Method => 'relaxed', Domain => $domain,
    Selector => $selector, KeyFile => $key,
    Headers => 'from:to:subject:date:message-id');
open(my $fh, '<', $in) or die "$in: $!\n";
my $msg = do { local $/; <$fh> };
close $fh;
(my $crlf = $msg) =~ s/\r?\n/\r\n/g;
$signer->PRINT($crlf);
$signer->CLOSE;
open(my $o, '>', $out) or die "$out: $!\n";
my $sig = $signer->signature->as_string;
$sig =~ s/\r\n/\n/g;
print $o $sig . "\n";
print $o $msg;
close $o;
