"""LangChain chat models and tools as journaled steps of a durable agent. Install ``durapod[langchain]``.

Inside an agent ``async def agent(input, ctx)``, wrap the chat model (tools bound or not) and the tools
for the job; each model call and each tool call is then a step: streamed as ``token`` events, logged as
``tool_call``/``tool_result`` events, and journaled as LangChain's own message dicts
(``messages_to_dict``), so that after a crash, a pause or a retry nothing journaled runs again::

    async def support(question: str, ctx: JobContext) -> str:
        llm = DurableChatModel(chat_model.bind_tools([lookup_ticket, refund]), ctx)
        tools = DurableTools([lookup_ticket, refund], ctx)
        messages: list[BaseMessage] = [HumanMessage(question)]
        while True:
            reply = await llm.ainvoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                return reply.text
            messages += await tools.run(reply.tool_calls)
"""

from durapod.integrations._langchain import DurableChatModel as DurableChatModel
from durapod.integrations._langchain import DurableTools as DurableTools

__all__ = ["DurableChatModel", "DurableTools"]
