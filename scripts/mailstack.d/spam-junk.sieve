# Global sieve_before script of the mailstack: mail that a spam filter would catch goes to Junk.
require ["fileinto", "mailbox"];
if anyof (header :is "X-Test-Spam" "yes",
          header :matches "Subject" "[SPAM]*",
          header :contains "Subject" "***SPAM***",
          header :matches "Subject" "[스팸]*") {
  fileinto :create "Junk";
  stop;
}
