"""The reply codes of the native /alarm_v2 protocol, with their meaning in Chinese and English."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    NOT_OBJECT = 1000
    BAD_PARAMS = 1001
    BAD_JSON = 1002
    BAD_METHOD = 1004
    DUPLICATE = 1010
    BAD_SIGN = 2000
    BAD_DEP = 2002
    BAD_ENV = 2003
    NOT_STRING = 2009
    STORE_DOWN = 3000
    NO_GROUP = 3001
    DINGTALK_TOKEN = 4000
    DINGTALK_CHAT = 4001
    DINGTALK_SEND = 4002
    WECOM_TOKEN = 4003
    WECOM_SEND = 4004
    EMAIL_SEND = 4005
    FEISHU_TOKEN = 4006
    FEISHU_SEND = 4007

    @property
    def meaning(self) -> str:
        zh, en = _MEANINGS[self]
        return f"{zh} / {en}"


_MEANINGS: dict[Code, tuple[str, str]] = {
    Code.OK: ("发送成功", "sent"),
    Code.NOT_OBJECT: ("内容格式不是字典", "the body is not a JSON object"),
    Code.BAD_PARAMS: ("内容参数不正确", "invalid parameters"),
    Code.BAD_JSON: ("json 格式解析失败", "the body is not valid JSON"),
    Code.BAD_METHOD: ("请求方法不是 POST", "the request method is not POST"),
    Code.DUPLICATE: ("告警信息在缓存期内，不发送", "the same alarm was accepted within the dedup window"),
    Code.BAD_SIGN: ("签名校验失败", "signature mismatch"),
    Code.BAD_DEP: ("部门参数 dep 参数错误", "unknown department (dep)"),
    Code.BAD_ENV: ("环境参数 env 参数错误", "unknown environment (env)"),
    Code.NOT_STRING: ("参数的值不是字符串，必须是字符串", "every value must be a string"),
    Code.STORE_DOWN: ("链接数据库失败", "the store is unreachable"),
    Code.NO_GROUP: ("数据库配置信息不存在", "no alert group for this id and level"),
    Code.DINGTALK_TOKEN: ("钉钉 TOKEN 获取失败", "DingTalk token request failed"),
    Code.DINGTALK_CHAT: ("钉钉创建聊天群失败", "DingTalk group chat creation failed"),
    Code.DINGTALK_SEND: ("钉钉发送消息失败", "DingTalk send failed"),
    Code.WECOM_TOKEN: ("微信 TOKEN 获取失败", "WeCom token request failed"),
    Code.WECOM_SEND: ("微信发送消息失败", "WeCom send failed"),
    Code.EMAIL_SEND: ("邮件发送消息失败", "email send failed"),
    Code.FEISHU_TOKEN: ("飞书 TOKEN 获取失败", "Feishu token request failed"),
    Code.FEISHU_SEND: ("飞书发送消息失败", "Feishu send failed"),
}
