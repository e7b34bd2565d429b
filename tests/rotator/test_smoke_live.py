"""First end-to-end check: a chat completion through the live server reaches the fake."""

import openai


def test_a_chat_completion_is_served_through_the_pool(live, alice, fake_gemini):
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key)
    completion = client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hello there"}]
    )
    assert completion.choices[0].message.content
    assert len(fake_gemini.requests) == 1
    assert fake_gemini.requests[0].secret in alice.upstream_keys
