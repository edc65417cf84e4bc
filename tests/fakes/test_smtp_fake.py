from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest

from tests.fakes.smtp import Printer, smtp_server


def test_the_stand_in_mail_server_prints_a_base64_mail_as_its_text(capsys: pytest.CaptureFixture[str]) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "alarm-bridge@example.com", "chenmin@example.com", "[高] 陈敏测试"
    mail.set_content("异常说明: 磁盘满了\nhost: db-1", cte="base64")
    mail.add_alternative("<p>异常说明: 磁盘满了</p>", subtype="html")
    printer = Printer()
    with smtp_server(printer) as port, smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(mail)
    out = capsys.readouterr().out
    assert b"base64" in printer.received[0].raw  # what travelled was encoded ...
    assert "Subject: [高] 陈敏测试\n异常说明: 磁盘满了\nhost: db-1" in out  # ... what the person reads is not
