# sieve_before for Korean-layout users (add-user --korean): spam goes to 스팸메일함, a folder the
# server marks with no SPECIAL-USE at all.
require ["fileinto", "mailbox"];
if anyof (header :is "X-Test-Spam" "yes",
          header :matches "Subject" "[SPAM]*",
          header :contains "Subject" "***SPAM***",
          header :matches "Subject" "[스팸]*") {
  fileinto :create "스팸메일함";
  stop;
}
